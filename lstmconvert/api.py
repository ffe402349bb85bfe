"""The library entry points: ``load``, ``save`` and ``run``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import LstmConvertError, ReadError, WriteError
from .model import SequenceModel
from .options import ReadHints, WriteOptions
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
    if path.exists() and not force:
        raise WriteError(path, "exists; pass --force (force=True) to replace it")
    if not path.parent.is_dir():
        raise WriteError(path, f"folder {path.parent} does not exist")
    model.validate()
    module = format_module(info)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        try:
            module.write(model, staging / path.name, WriteOptions(opset=opset))
        except LstmConvertError as exc:
            if str(path.name) in str(exc):
                raise
            raise WriteError(path, str(exc)) from exc
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


def run(path: PathLike, inputs: np.ndarray, *, format: Optional[str] = None, **hints) -> np.ndarray:
    """Run a model file in its own framework's runtime on batch-major ``inputs``."""
    path = Path(path)
    model = load(path, format=format, **hints)
    return format_module(format_for_path(path, format)).run(path, model, inputs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
