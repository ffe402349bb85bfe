"""The library entry points: ``load``, ``save``, ``widen_in_place`` and ``run``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from . import progress
from .errors import LstmConvertError, ReadError, UnsupportedError, WriteError
from .model import SequenceModel
from .options import EditRequest, EditResult, ReadHints, WriteOptions
from .registry import format_for_path, format_module

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
        ReadError: the file is missing or is not an LSTM model this format can carry.

    Example:
        >>> model = load("tagger.pt", batch_first=True)
    """
    path = Path(path)
    info = format_for_path(path, format)
    if not path.is_file():
        raise ReadError(path, "no such file" if not path.exists() else "not a regular file")
    module = format_module(info)
    try:
        with progress.phase("reading", path.stat().st_size):
            model = module.read(path, ReadHints(**hints))
        model.meta.setdefault("source_format", info.name)
        return model.validate()
    except LstmConvertError as exc:
        if isinstance(exc, ReadError) or str(path) in str(exc):
            raise
        raise ReadError(path, str(exc)) from exc
    except Exception as exc:  # a framework choking on a damaged file
        if os.environ.get("LSTMCONVERT_DEBUG"):
            raise
        raise ReadError(path, f"not a readable {info.name} model ({_one_line(exc)})") from exc


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
    module = format_module(info)

    def produce(staged: Path) -> None:
        try:
            with progress.phase("writing", model_nbytes(model)):
                module.write(model, staged, WriteOptions(opset=opset))
        except LstmConvertError as exc:
            if str(path.name) in str(exc):
                raise
            raise WriteError(path, str(exc)) from exc

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
            f"{src}: in-place widening writes the source's own format ({info.name}), not {dst_info.name}"
        )
    if not src.is_file():
        raise ReadError(src, "no such file" if not src.exists() else "not a regular file")
    if dst.exists() and dst.resolve() == src.resolve():
        raise WriteError(dst, "is the input file; choose another output path")
    _check_target(dst, force)
    module = format_module(info)
    edit = getattr(module, "edit", None)
    if edit is None:
        raise UnsupportedError(f"{src}: the {info.name} format cannot widen a model in place")
    request = EditRequest(lstms=tuple(lstm), consumers=tuple(consumers), backward=backward, merge=merge,
                          preserve=preserve, seed=seed)
    outcome = []

    def produce(staged: Path) -> None:
        try:
            outcome.append(edit(src, staged, request))
        except LstmConvertError as exc:
            if isinstance(exc, (ReadError, WriteError)) or str(src) in str(exc):
                raise
            if isinstance(exc, UnsupportedError):
                raise UnsupportedError(f"{src}: {exc}") from exc
            raise ReadError(src, str(exc)) from exc
        except Exception as exc:  # a framework choking on a damaged file
            if os.environ.get("LSTMCONVERT_DEBUG"):
                raise
            raise ReadError(src, f"not a readable {info.name} model ({_one_line(exc)})") from exc

    _write_staged(dst, force, produce)
    return outcome[0]


def _write_staged(path: Path, force: bool, produce) -> list:
    """Run ``produce(staged_path)`` in a temporary folder beside ``path``, then rename its files into place."""
    _check_target(path, force)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        produce(staging / path.name)
        produced = sorted(staging.iterdir())
        targets = [path.parent / p.name for p in produced]
        clashes = [t for t in targets if t.exists() and t != path]
        if clashes and not force:
            raise WriteError(clashes[0], "exists; pass --force (force=True) to replace it")
        for source, target in zip(produced, targets):
            os.replace(source, target)
        return targets
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_target(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise WriteError(path, "exists; pass --force (force=True) to replace it")
    if not path.parent.is_dir():
        raise WriteError(path, f"folder {path.parent} does not exist")


def run(path: PathLike, inputs: np.ndarray, *, format: Optional[str] = None, **hints) -> np.ndarray:
    """Run a model file in its own framework's runtime on batch-major ``inputs``."""
    path = Path(path)
    model = load(path, format=format, **hints)
    return format_module(format_for_path(path, format)).run(path, model, inputs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
