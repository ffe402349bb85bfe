"""Where each part of a neutral model lives in a PyTorch state_dict, and the canonical layout.

A ``Naming`` maps the neutral model's parts to state_dict key prefixes: the embedding, each LSTM layer
(an ``nn.LSTM`` module prefix plus the layer number inside it, the ``_l{k}`` of its keys) and each head
``nn.Linear``. The reader finds one in a user's checkpoint; the writer reuses it (so the user's own
module, widened to bidirectional, loads the result with ``strict=True``) or falls back to the
canonical naming of ``SequenceLSTM``:

* ``embedding.weight``
* ``lstm.weight_ih_l{k}[_reverse]`` ... when one ``nn.LSTM(num_layers=L)`` can hold every layer
  (same hidden and projection sizes, bias and direction count, no reverse-only layer, bidirectional
  layers merged by concatenation as ``nn.LSTM`` does between its layers);
* otherwise one single-layer ``nn.LSTM`` per layer: ``lstm.{k}.weight_ih_l0[_reverse]`` (a layer
  that only runs backward keeps its weights under the forward names; the stored config marks it);
* ``head.{j}.weight``, ``head.{j}.bias``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...model import SequenceModel

# neutral LSTMDirection field -> nn.LSTM parameter stem
PARAM_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh", "w_hr": "weight_hr"}
FIELD_NAMES = {v: k for k, v in PARAM_NAMES.items()}


def join(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` alone for the empty prefix (a bare module's state_dict)."""
    return f"{prefix}.{name}" if prefix else name


def lstm_key(module: str, param: str, layer: int, reverse: bool) -> str:
    """The state_dict key of one nn.LSTM parameter, e.g. ``lstm.weight_hh_l1_reverse``."""
    return join(module, f"{param}_l{layer}{'_reverse' if reverse else ''}")


@dataclass(frozen=True)
class LayerSlot:
    """One neutral LSTM layer's place: the nn.LSTM's key prefix and its layer number inside it."""

    module: str
    index: int


@dataclass(frozen=True)
class Naming:
    """Key prefixes of the embedding (None: features input), the LSTM layers and the head layers."""

    embedding: Optional[str]
    layers: tuple
    head: tuple

    def to_dict(self) -> dict:
        return {
            "embedding": self.embedding,
            "layers": [[slot.module, slot.index] for slot in self.layers],
            "head": list(self.head),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Naming":
        return cls(
            embedding=data.get("embedding"),
            layers=tuple(LayerSlot(str(m), int(i)) for m, i in data["layers"]),
            head=tuple(str(h) for h in data.get("head", ())),
        )

    def fits(self, config) -> bool:
        """True if this naming has one place for each part of a model with this SequenceLSTMConfig,
        and layers sharing an nn.LSTM prefix could really live in one nn.LSTM."""
        if len(self.layers) != len(config.layers) or len(self.head) != len(config.head):
            return False
        if (self.embedding is None) != (config.vocab_size is None):
            return False
        groups: dict = {}
        for slot, layer in zip(self.layers, config.layers):
            groups.setdefault(slot.module, []).append((slot.index, layer))
        for members in groups.values():
            members.sort(key=lambda m: m[0])
            if [i for i, _ in members] != list(range(len(members))):
                return False
            if len(members) > 1 and not single_module_fits([layer for _, layer in members]):
                return False
        return True


def single_module_fits(layers: list) -> bool:
    """Whether one ``nn.LSTM(num_layers=len(layers))`` can hold these layers (LayerConfig values)."""
    first = layers[0]
    for k, layer in enumerate(layers):
        if layer.reverse or layer.bidirectional != first.bidirectional or layer.bias != first.bias:
            return False
        if (layer.hidden_size, layer.proj_size) != (first.hidden_size, first.proj_size):
            return False
        if layer.bidirectional and layer.merge != "concat":
            return False
        if k > 0 and layer.input_size != layers[k - 1].output_size:
            return False
    return True


def source_naming(model: SequenceModel, config) -> Optional[Naming]:
    """The naming a PyTorch reader recorded, if it still has exactly one place per part."""
    recorded = model.meta.get("torch", {}).get("naming")
    if not recorded:
        return None
    try:
        naming = Naming.from_dict(recorded)
    except (KeyError, TypeError, ValueError):
        return None
    return naming if naming.fits(config) else None


def canonical_naming(config) -> Naming:
    """SequenceLSTM's own naming for a model with this SequenceLSTMConfig (see the module docstring)."""
    if single_module_fits(config.layers):
        layers = tuple(LayerSlot("lstm", k) for k in range(len(config.layers)))
    else:
        layers = tuple(LayerSlot(f"lstm.{k}", 0) for k in range(len(config.layers)))
    return Naming(
        embedding="embedding" if config.vocab_size is not None else None,
        layers=layers,
        head=tuple(f"head.{j}" for j in range(len(config.head))),
    )


def state_arrays(model: SequenceModel, naming: Naming) -> dict:
    """The model's weights as an ordered {state_dict key: numpy array}, placed by ``naming``.

    Order follows a module's own ``state_dict()``: embedding, then per LSTM layer the forward and
    reverse parameters in nn.LSTM's order, then the head. nn.LSTM keeps either both biases or none,
    so a layer with one bias (a Keras source keeps its single bias in ``b_ih``) gets an explicit
    zero ``bias_hh``: the sum the cell adds is unchanged, bit for bit.
    """
    out: dict = {}
    if model.embedding is not None:
        out[join(naming.embedding, "weight")] = model.embedding.weight
    for slot, layer in zip(naming.layers, model.layers):
        with_bias = any(d.has_bias for d in layer.directions)
        for d, direction in enumerate(layer.directions):
            reverse = d == 1
            fields = ["w_ih", "w_hh"] + (["b_ih", "b_hh"] if with_bias else []) + (["w_hr"] if direction.w_hr is not None else [])
            for name in fields:
                array = getattr(direction, name)
                if array is None:  # a missing bias of a biased layer
                    array = np.zeros(4 * direction.hidden_size, dtype=direction.w_ih.dtype)
                out[lstm_key(slot.module, PARAM_NAMES[name], slot.index, reverse)] = array
    for prefix, dense in zip(naming.head, model.head):
        out[join(prefix, "weight")] = dense.weight
        if dense.bias is not None:
            out[join(prefix, "bias")] = dense.bias
    return out
