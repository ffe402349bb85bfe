"""Which formats exist, which file names they own, and how to reach their code lazily.

Each format is a module under ``lstmconvert.formats`` exposing three functions:

* ``read(path: Path, hints: ReadHints) -> SequenceModel``
* ``write(model: SequenceModel, path: Path, options: WriteOptions) -> None``: write ``path`` (and any
  side files beside it, such as ONNX external data); ``api.save`` makes the result atomic.
* ``run(path: Path, model: SequenceModel, inputs: np.ndarray) -> np.ndarray``: run the file in the
  framework's own runtime. ``inputs`` is batch-major (N, T) token ids or (N, T, F) features, right
  padded where the model is masked; the result is batch-major too: (N, T, F) or (N, F).

and may expose a fourth, for models of any shape (``api.widen_in_place``):

* ``edit(src: Path, dst: Path, request: EditRequest) -> EditResult``: write ``dst`` in the same format,
  with the requested LSTMs made bidirectional and their consumers widened, everything else copied as
  it is. A reader that meets layers outside the neutral shape raises ``OutsideNeutralShapeError``, and
  ``convert`` turns to ``edit``.

What each format's files can carry is its ``Capabilities`` record (``FormatInfo.capabilities``, kept in
``capabilities.py``); a writer calls ``capabilities.check_carries`` before encoding, and consumers ask
the record instead of naming formats. Formats raise path-less errors; ``api`` names the user's file.

The module is imported only when a file of that format is touched, so ``lstmconvert --help`` and a
conversion between two formats never import the frameworks of a third.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

from .capabilities import CAPABILITIES, Capabilities
from .errors import LstmConvertError


@dataclass(frozen=True)
class FormatInfo:
    name: str
    module: str
    extensions: tuple
    extra: str  # the pip extra that installs its framework
    description: str
    # Its files leave the embedding, head, layout and readout unsaid, so the read hints
    # (--embedding, --head, --batch-first/--seq-first, --readout) apply; other formats record them.
    read_hints: bool = False
    # A folder holding all of these files is a model of this format (Keras's zipped=False save).
    folder_files: tuple = ()

    @property
    def capabilities(self) -> Capabilities:
        """What the format's files can carry (``capabilities.CAPABILITIES``)."""
        return CAPABILITIES[self.name]


FORMATS = {
    info.name: info
    for info in (
        FormatInfo("torch", "lstmconvert.formats.torch_format", (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".safetensors"),
                   "torch", "PyTorch state_dict (.pt/.pth, Lightning .ckpt, pytorch_model.bin, .safetensors) or "
                   "torch.export program (.pt2)", read_hints=True),
        FormatInfo("keras", "lstmconvert.formats.keras_format", (".keras", ".h5", ".hdf5"), "keras",
                   "Keras 3 archive (.keras), folder saved with zipped=False, or full-model HDF5 (.h5)",
                   folder_files=("config.json", "model.weights.h5")),
        FormatInfo("onnx", "lstmconvert.formats.onnx_format", (".onnx",), "onnx",
                   "ONNX model with LSTM operators"),
    )
}


def format_names() -> tuple:
    return tuple(FORMATS)


def format_for_path(path: Path, explicit: Optional[str] = None) -> FormatInfo:
    """The format named ``explicit``, else the one owning ``path``'s extension (last suffix first)."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise LstmConvertError(f"unknown format {explicit!r}; choose one of {', '.join(FORMATS)}")
        return FORMATS[explicit]
    if Path(path).is_dir():
        return _format_of_folder(Path(path))
    for suffix in reversed(Path(path).suffixes):
        for info in FORMATS.values():
            if suffix.lower() in info.extensions:
                return info
    known = ", ".join(ext for info in FORMATS.values() for ext in info.extensions)
    raise LstmConvertError(
        f"cannot tell the format from the extension (known: {known}); pass --from/--to"
    ).at(path)


def model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder that some format reads as one model."""
    return path.is_dir() and _folder_owner(path) is not None


def _folder_owner(path: Path) -> Optional[FormatInfo]:
    return next((info for info in FORMATS.values()
                 if info.folder_files and all((path / name).is_file() for name in info.folder_files)), None)


def _format_of_folder(path: Path) -> FormatInfo:
    owner = _folder_owner(path)
    if owner is not None:
        return owner
    if (path / "saved_model.pb").is_file():
        raise LstmConvertError("a TensorFlow SavedModel folder holds a traced graph, not layers lstmconvert can "
                               "read; convert the Keras file the model was saved to with model.save('model.keras')"
                               ).at(path)
    raise LstmConvertError("a folder, not a model file (a Keras model saved with zipped=False is a folder "
                           "holding config.json and model.weights.h5)").at(path)


def format_module(info: FormatInfo, path: Optional[Path] = None) -> ModuleType:
    """Import a format's module; a missing framework names the file (when given) and the extra to install."""
    try:
        return importlib.import_module(info.module)
    except ImportError as exc:
        from .errors import MissingDependencyError

        missing = (getattr(exc, "name", None) or str(exc)).split(".")[0]
        purpose = f"the {info.name} format" if path is None else f"{path}: the {info.name} format"
        raise MissingDependencyError(missing, info.extra, purpose) from exc
