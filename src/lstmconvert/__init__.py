"""lstmconvert: turn trained unidirectional LSTMs into bidirectional ones, across PyTorch, Keras, ONNX.

    >>> import lstmconvert
    >>> model = lstmconvert.load("tagger.pt")
    >>> bi = lstmconvert.to_bidirectional(model, backward="copy", merge="concat")
    >>> lstmconvert.save(bi, "tagger_bi.onnx")

Importing lstmconvert imports no framework; each format imports its own when a file needs it.
"""

from .errors import (
    LstmConvertError,
    MissingDependencyError,
    ModelError,
    ReadError,
    UnsupportedError,
    WriteError,
)

# Everything else needs numpy; it is imported on first use, so ``lstmconvert --help`` (whose
# package import runs this file) loads click and nothing heavier.
_LAZY = {
    "api": ("load", "run", "save", "widen_in_place"),
    "convert": ("Preservation", "PreservationWarning", "UntrainableWarning", "preservation", "to_bidirectional"),
    "model": ("Activation", "Dense", "Embedding", "LSTMDirection", "LSTMLayer", "SequenceModel"),
    "checks": ("RoundtripReport", "VerifyReport", "roundtrip", "verify"),
    "batch": ("ConversionResult", "convert_file", "convert_many"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_HOME))


__version__ = "0.1.0"

__all__ = [
    "load", "save", "run", "widen_in_place", "to_bidirectional", "preservation", "Preservation", "PreservationWarning", "UntrainableWarning",
    "LstmConvertError", "MissingDependencyError", "ModelError", "ReadError", "UnsupportedError",
    "WriteError", "Activation", "Dense", "Embedding", "LSTMDirection", "LSTMLayer", "SequenceModel",
    "verify", "roundtrip", "VerifyReport", "RoundtripReport", "convert_file", "convert_many", "ConversionResult",
]
