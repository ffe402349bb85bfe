"""lstmconvert: turn trained unidirectional LSTMs into bidirectional ones, across PyTorch, Keras, ONNX.

    >>> import lstmconvert
    >>> model = lstmconvert.load("tagger.pt")
    >>> bi = lstmconvert.to_bidirectional(model, backward="copy", merge="concat")
    >>> lstmconvert.save(bi, "tagger_bi.onnx")

Importing lstmconvert imports no framework; each format imports its own when a file needs it.
"""

from .api import load, run, save
from .convert import Preservation, PreservationWarning, UntrainableWarning, preservation, to_bidirectional
from .errors import (
    LstmConvertError,
    MissingDependencyError,
    ModelError,
    ReadError,
    UnsupportedError,
    WriteError,
)
from .model import Activation, Dense, Embedding, LSTMDirection, LSTMLayer, SequenceModel
from .checks import RoundtripReport, VerifyReport, roundtrip, verify  # numpy only; frameworks load on use

__version__ = "0.1.0"

__all__ = [
    "load", "save", "run", "to_bidirectional", "preservation", "Preservation", "PreservationWarning", "UntrainableWarning",
    "LstmConvertError", "MissingDependencyError", "ModelError", "ReadError", "UnsupportedError",
    "WriteError", "Activation", "Dense", "Embedding", "LSTMDirection", "LSTMLayer", "SequenceModel",
    "verify", "roundtrip", "VerifyReport", "RoundtripReport",
]
