"""Which warnings reach the user: lstmconvert's own, about their model, and no framework's internal ones.

PyTorch, TensorFlow and onnx warn about their own internals (deprecations, storage types, which
kernel runs) while lstmconvert drives them; those say nothing about the user's model. A warning counts
as lstmconvert's when the code that called ``warnings.warn`` is in the lstmconvert package (also for
numpy warnings, such as an overflow while casting, raised from lstmconvert's own lines), except
PyTorch's C++ warnings: they surface in the Python frame that called into torch, which may be
lstmconvert's, and are recognised by the "(Triggered internally at ...)" PyTorch appends to them.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional


def issued_by_lstmconvert(frame) -> bool:
    """Walk out of the ``warnings`` machinery from ``frame``; is the first frame beyond it lstmconvert's?"""
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "warnings":
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "lstmconvert"


# PyTorch appends this to every warning its C++ code raises (TORCH_WARN), e.g. "LSTM with projections
# is not supported with oneDNN. Using default implementation."
TORCH_INTERNAL_MARK = "(Triggered internally at "


def is_own_warning(message, frame) -> bool:
    return issued_by_lstmconvert(frame) and TORCH_INTERNAL_MARK not in str(message)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextmanager
def own_warnings(emit: Optional[Callable[[str], None]] = None) -> Iterator[list]:
    """Collect lstmconvert's warnings (as one-line texts) and drop the frameworks' internal ones.

    ``emit`` is called with each collected text as it happens (the CLI prints it); left out, the
    warning goes on to the handler installed before (so an enclosing ``own_warnings`` sees it too).
    The previous handler is restored on exit.
    """
    collected: list = []
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not is_own_warning(message, sys._getframe(1)):
            return
        text = one_line(message)
        collected.append(text)
        if emit is not None:
            emit(text)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield collected
    finally:
        warnings.showwarning = previous
