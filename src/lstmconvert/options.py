"""Options that travel from the CLI or the API to a format's reader and writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class ReadHints:
    """What a file cannot tell about itself; a reader uses the hints that apply to its format.

    * ``embedding`` / ``head``: the state_dict prefix of the embedding / head when guessing is
      ambiguous (PyTorch). ``head`` lists head layers as ``"A:relu,B"``, each optionally with the
      activation after it, which a state_dict does not record.
    * ``batch_first``: None keeps the format's default (PyTorch: seq-first; Keras: batch-first).
    * ``readout``: "sequence" or "last"; None keeps what the file says (PyTorch default: sequence).
    * ``lstm``: read only this LSTM (state_dict prefix), features in, as a pure model, ignoring the rest
      of the file (PyTorch; a reader that honours it records it in ``meta["lstm_alone"]``).
    """

    embedding: Optional[str] = None
    head: Optional[str] = None
    batch_first: Optional[bool] = None
    readout: Optional[str] = None
    lstm: Optional[str] = None


@dataclass(frozen=True)
class WriteOptions:
    """Writer settings. ``opset`` is ONNX's (None: the newest onnxruntime runs)."""

    opset: Optional[int] = None


@dataclass(frozen=True)
class EditRequest:
    """What an in-place widening (``api.widen_in_place``, a format's ``edit``) is asked to do.

    * ``lstms``: names of the LSTMs to widen (Keras layer names, ONNX node names, state_dict prefixes);
      empty means every unidirectional LSTM the file holds (PyTorch needs them named).
    * ``consumers``: state_dict prefixes of the modules that read the LSTMs' output (PyTorch only: a
      file with a graph finds its consumers itself).
    * ``backward``, ``merge``, ``preserve``, ``seed``: as for ``convert.to_bidirectional``.
    """

    lstms: tuple = ()
    consumers: tuple = ()
    backward: str = "copy"
    merge: str = "concat"
    preserve: bool = True
    seed: int = 0


@dataclass
class EditResult:
    """What a format's ``edit`` changed: the LSTMs widened, the consumers adapted, and notes for the user.

    ``preservation`` is a ``convert.Preservation``; ``notes`` are sentences the CLI prints after the
    result (e.g. how to read the forward direction's final states).
    """

    widened: list
    consumers: list
    preservation: object
    notes: list = field(default_factory=list)
