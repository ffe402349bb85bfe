"""The library entry points: ``load``, ``save``, ``widen_in_place`` and ``run``.

This is the one boundary between the user's paths and the formats. Formats raise path-less
``LstmConvertError``s; every entry point here names the user's file in them (``exc.at(path)``), maps a
staging path back to the target it stands for, and keeps the error's class.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from . import progress
from .errors import LstmConvertError, ReadError, UnsupportedError, WriteError
from .model import SequenceModel
from .options import EditRequest, EditResult, ReadHints, WriteOptions
from .registry import format_for_path, format_module, model_folder
from .staging import OUTPUT_FOLDER, check_target as _check_target, write_staged

PathLike = Union[str, os.PathLike]


def load(path: PathLike, *, format: Optional[str] = None, **hints) -> SequenceModel:
    """Read an LSTM model file into the neutral model.

    Args:
        path: a PyTorch (.pt/.pth/.pt2), Keras (.keras/.h5) or ONNX (.onnx) file.
        format: "torch", "keras" or "onnx" to override the extension.
        **hints: see ``ReadHints`` (embedding, head, batch_first, readout).

    Returns:
        The validated neutral model.

    Raises:
        ReadError: the file is missing, damaged or holds no LSTM model this format reads.
        UnsupportedError: the model uses something lstmconvert cannot carry exactly.
        MissingDependencyError: the format's framework is not installed.
        Each names ``path`` (``exc.path``; ``str(exc)`` is ``"<path>: <problem>"``).

    Example:
        >>> model = load("tagger.pt", batch_first=True)
    """
    path = Path(path)
    info = format_for_path(path, format)
    check_source(path)
    module = _format_module(info, path)
    with _reading(path, info), progress.phase("reading", _stored_bytes(path)):
        model = module.read(path, ReadHints(**hints))
        model.meta.setdefault("source_format", info.name)
        return model.validate()


def save(
    model: SequenceModel,
    path: PathLike,
    *,
    format: Optional[str] = None,
    force: bool = False,
    opset: Optional[int] = None,
) -> list:
    """Write ``model`` atomically; returns the paths written (a format may add side files).

    Nothing is written unless the whole model converts; an existing file is replaced only with
    ``force=True``. The writer works in a temporary folder beside ``path``; its files are renamed into
    place at the end, so a failure leaves no partial output.
    """
    path = Path(path)
    info = format_for_path(path, format)
    _check_target(path, force)
    model.validate()
    module = _format_module(info, path)

    def produce(staged: Path) -> None:
        with progress.phase("writing", model_nbytes(model)):
            module.write(model, staged, WriteOptions(opset=opset))

    return _write_staged(path, force, produce)


def model_nbytes(model: SequenceModel) -> int:
    """The bytes of the model's weights (what a writer writes, give or take its headers)."""
    return sum(array.nbytes for array in model.arrays().values())


def widen_in_place(
    src: PathLike,
    dst: PathLike,
    *,
    format: Optional[str] = None,
    lstm: Sequence[str] = (),
    consumers: Sequence[str] = (),
    backward: str = "copy",
    merge: str = "concat",
    preserve: bool = True,
    seed: int = 0,
    force: bool = False,
) -> EditResult:
    """Widen the LSTMs inside a model of any shape, writing ``dst`` in ``src``'s own format.

    Only the LSTMs (all unidirectional ones, or those named in ``lstm``) and the modules that read
    their output change; every other layer, node or tensor is copied as it is. Files with a graph
    (Keras, ONNX) find the consumers themselves; a PyTorch state_dict needs ``lstm`` and
    ``consumers`` (state_dict prefixes). Written atomically like ``save``.

    Example:
        >>> widen_in_place("crnn.pt", "crnn_bi.pt", lstm=["rnn"], consumers=["fc"])
    """
    src, dst = Path(src), Path(dst)
    info = format_for_path(src, format)
    dst_info = format_for_path(dst, format)
    if dst_info.name != info.name:
        raise UnsupportedError(
            f"in-place widening writes the source's own format ({info.name}), not {dst_info.name}"
        ).at(src)
    check_source(src)
    refuse_overwriting_input(src, dst)
    _check_target(dst, force)
    module = _format_module(info, src)
    edit = getattr(module, "edit", None)
    if edit is None:
        raise UnsupportedError(f"the {info.name} format cannot widen a model in place").at(src)
    request = EditRequest(lstms=tuple(lstm), consumers=tuple(consumers), backward=backward, merge=merge,
                          preserve=preserve, seed=seed)
    outcome = []

    def produce(staged: Path) -> None:
        with _reading(src, info):  # the edit's refusals are about the source file
            outcome.append(edit(src, staged, request))

    _write_staged(dst, force, produce)
    return outcome[0]


def _format_module(info, path: Path):
    """The format's module; a missing framework names the file it was needed for."""
    try:
        return format_module(info)
    except LstmConvertError as exc:
        raise exc.at(path)


@contextmanager
def _reading(path: Path, info):
    """Name ``path`` in every error raised while reading it; a framework's own exception is a ReadError."""
    try:
        yield
    except WriteError:  # about the output; the staging step names the target
        raise
    except LstmConvertError as exc:
        raise exc.at(path)
    except Exception as exc:  # a framework choking on a damaged file
        if os.environ.get("LSTMCONVERT_DEBUG"):
            raise
        raise ReadError(path, f"not a readable {info.name} model ({_one_line(exc)})") from exc


def _write_staged(path: Path, force: bool, produce) -> list:
    """``staging.write_staged``, with errors naming ``path``, the user's target, never the staging folder:
    a path-less error gets ``path``, and a staged path in an error (or in its text) is mapped back to the
    place it was meant for."""
    try:
        return write_staged(path, force, produce)
    except LstmConvertError as exc:
        raise _unstaged(exc, path)
    except OSError as exc:  # the folder refuses the staging folder or the rename; say why, not where
        raise WriteError(path, f"cannot be written ({exc.strerror or type(exc).__name__})") from exc


def _unstaged(exc: LstmConvertError, path: Path) -> LstmConvertError:
    """``exc`` naming ``path`` where it named (or did not name) a file in a staging folder of ``path``."""
    staged = re.compile(re.escape(str(path.parent)) + rf"/{re.escape(f'.{path.name}.')}[^/]*/{OUTPUT_FOLDER}")
    if exc.path is not None:
        exc.path = Path(staged.sub(str(path.parent), str(exc.path))) if staged.match(str(exc.path)) else exc.path
    exc.at(path)
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (staged.sub(str(path.parent), exc.args[0]), *exc.args[1:])
    return exc


def refuse_overwriting_input(src: PathLike, dst: PathLike) -> None:
    """A conversion never replaces its input, also when ``dst`` reaches it by another name (a symlink,
    a hard link, ``./``): the input is never modified."""
    src, dst = Path(src), Path(dst)
    try:
        same = dst.exists() and os.path.samefile(src, dst)
    except OSError:
        same = False
    if same or (dst.resolve() == src.resolve()):
        raise WriteError(dst, f"is the input file {src}; choose another output path (the input is never modified)")


def _stored_bytes(path: Path) -> int:
    """A source's size: the file's, or the sum of a model folder's files."""
    if path.is_dir():
        return sum(entry.stat().st_size for entry in path.iterdir() if entry.is_file())
    return path.stat().st_size


def check_source(path: Path) -> None:
    """Refuse a source that is missing, empty, or neither a file nor a model folder (``registry``)."""
    if model_folder(path):
        return
    if not path.is_file():
        raise ReadError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file")


def run(path: PathLike, inputs: np.ndarray, *, format: Optional[str] = None, **hints) -> np.ndarray:
    """Run a model file in its own framework's runtime on batch-major ``inputs``."""
    path = Path(path)
    return run_loaded(path, load(path, format=format, **hints), inputs, format=format)


def run_loaded(path: PathLike, model: SequenceModel, inputs: np.ndarray, *,
               format: Optional[str] = None) -> np.ndarray:
    """Run the file ``model`` was loaded from in its own runtime (``run`` without reading it again)."""
    path = Path(path)
    try:
        return format_module(format_for_path(path, format)).run(path, model, inputs)
    except LstmConvertError as exc:
        raise exc.at(path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
