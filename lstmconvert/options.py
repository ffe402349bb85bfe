"""Options that travel from the CLI or the API to a format's reader and writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ReadHints:
    """What a file cannot tell about itself; a reader uses the hints that apply to its format.

    * ``embedding`` / ``head``: the state_dict prefix of the embedding / head when guessing is
      ambiguous (PyTorch). ``head`` lists head layers as ``"A:relu,B"``, each optionally with the
      activation after it, which a state_dict does not record.
    * ``batch_first``: None keeps the format's default (PyTorch: seq-first; Keras: batch-first).
    * ``readout``: "sequence" or "last"; None keeps what the file says (PyTorch default: sequence).
    """

    embedding: Optional[str] = None
    head: Optional[str] = None
    batch_first: Optional[bool] = None
    readout: Optional[str] = None


@dataclass(frozen=True)
class WriteOptions:
    """Writer settings. ``opset`` is ONNX's (None: the newest onnxruntime runs)."""

    opset: Optional[int] = None
