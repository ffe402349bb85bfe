"""SequenceLSTM's configuration: what rebuilding the module needs besides the weights.

The config travels inside the files lstmconvert writes, so a file can be read back (and its module
rebuilt) without guessing:

* ``.pt``: in the saved state_dict's ``_metadata`` (the per-module version table every
  ``state_dict()`` carries), under the entry ``"lstmconvert"`` as a JSON string. ``torch.load(...,
  weights_only=True)`` keeps ``_metadata`` and ``load_state_dict(strict=True)`` only looks up entries
  named after submodules, so the entry costs a user's module nothing.
* ``.pt2``: as the extra file ``lstmconvert.json`` of ``torch.export.save``.

This module is framework-free so the config can be built and checked without torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from ...errors import UnsupportedError
from ...capabilities import check_carries
from ...model import SequenceModel
from .naming import Naming

METADATA_KEY = "lstmconvert"
EXTRA_FILE = "lstmconvert.json"
SCHEMA = "lstmconvert.torch/1"


@dataclass
class LayerConfig:
    """One LSTM layer: sizes, directions and how a bidirectional layer merges its two outputs."""

    input_size: int
    hidden_size: int
    proj_size: int = 0
    bias: bool = True
    bidirectional: bool = False
    reverse: bool = False  # one direction, running backward in time
    reversed_output: bool = False  # Keras go_backwards: the output stays in reversed time order
    merge: str = "concat"

    @property
    def direction_output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def output_size(self) -> int:
        width = self.direction_output_size
        return 2 * width if self.bidirectional and self.merge == "concat" else width


@dataclass
class HeadConfig:
    """One head layer: ``activation(x @ weight.T + bias)``."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "linear"


@dataclass
class SequenceLSTMConfig:
    """Everything SequenceLSTM needs to rebuild itself; ``vocab_size`` set means token-id input."""

    layers: list
    head: list = field(default_factory=list)
    vocab_size: Optional[int] = None
    padding_idx: Optional[int] = None
    batch_first: bool = False
    readout: str = "sequence"
    masked: bool = False
    mask_value: float = 0.0
    dtype: str = "float32"

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SequenceLSTMConfig":
        data = dict(data)
        data["layers"] = [LayerConfig(**layer) for layer in data["layers"]]
        data["head"] = [HeadConfig(**dense) for dense in data.get("head", [])]
        return cls(**data)


def config_from_model(model: SequenceModel) -> SequenceLSTMConfig:
    """The SequenceLSTM config of ``model``; UnsupportedError for what nn.LSTM cannot compute."""
    check_torch_compatible(model)
    layers = []
    for layer in model.layers:
        layers.append(LayerConfig(
            input_size=layer.input_size,
            hidden_size=layer.hidden_size,
            proj_size=layer.proj_size,
            bias=any(d.has_bias for d in layer.directions),
            bidirectional=layer.bidirectional,
            reverse=layer.reverse,
            reversed_output=layer.reversed_output,
            merge=layer.merge,
        ))
    head = [HeadConfig(d.in_features, d.out_features, d.bias is not None, d.activation) for d in model.head]
    return SequenceLSTMConfig(
        layers=layers,
        head=head,
        vocab_size=model.embedding.vocab_size if model.embedding is not None else None,
        padding_idx=model.embedding.padding_idx if model.embedding is not None else None,
        batch_first=model.batch_first,
        readout=model.readout,
        masked=model.masked,
        mask_value=float(model.mask_value),
        dtype=model.dtype.name,
    )


def check_torch_compatible(model: SequenceModel) -> None:
    """Refuse what PyTorch's LSTM cannot compute exactly, naming the layer and the feature.

    What no PyTorch LSTM carries is refused by ``capabilities``; here, what its encoding adds.
    """
    check_carries(model, "torch")
    for k, layer in enumerate(model.layers):
        if layer.reversed_output and model.masked:
            raise UnsupportedError(
                f"LSTM layer {k} runs backward and returns its output in reversed time order over masked input; "
                "that Keras-specific padding behaviour has no PyTorch equivalent"
            )


def metadata_blob(config: SequenceLSTMConfig, naming: Naming) -> str:
    """The JSON stored in a written file: schema tag, module config and where each part's keys are."""
    return json.dumps({"schema": SCHEMA, "config": config.to_dict(), "naming": naming.to_dict()}, sort_keys=True)


def parse_metadata_blob(text: str) -> tuple:
    """(SequenceLSTMConfig, Naming) from ``metadata_blob`` output; ValueError if it is not ours."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"unknown lstmconvert metadata schema {data.get('schema') if isinstance(data, dict) else data!r}")
    return SequenceLSTMConfig.from_dict(data["config"]), Naming.from_dict(data["naming"])
