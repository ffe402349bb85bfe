"""The usual LSTM conversion bugs, each as a function that applies the bug to a neutral model.

``diagnose`` runs every suspect through the reference forward pass and looks for the one that
reproduces what a runtime really computed; ``weights`` asks which bug turns one file's weights into
another's. Both draw from this one catalogue.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .. import gates
from ..model import Activation, LSTMDirection, SequenceModel
from ..reference import NO_DEVIATION, Deviation

CANONICAL = "ifgo"

# Gate orders with a known story; every other permutation is still tried on small models.
_KNOWN_ORDERS = {
    gates.TO_ONNX: "ONNX order i,o,f,g taken as PyTorch/Keras order?",
    gates.FROM_ONNX: "PyTorch/Keras order taken as ONNX order?",
    (0, 2, 1, 3): "Keras 1 order i,c,f,o?",
    (0, 1, 3, 2): "cuDNN-on-ROCm order i,f,o,c?",
}

KERAS2_HARD_SIGMOID = Activation("hard_sigmoid", alpha=0.2, beta=0.5)
KERAS3_HARD_SIGMOID = Activation("hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)


@dataclass(frozen=True)
class DirectionBug:
    """A bug confined to one direction's weights or activations."""

    label: str  # e.g. "gate blocks permuted as i,o,f,g"
    hint: str  # the likely cause, may be ""
    apply: Callable[[LSTMDirection], LSTMDirection]

    def describe(self) -> str:
        return f"{self.label} ({self.hint})" if self.hint else self.label


@dataclass(frozen=True)
class Suspect:
    """A whole-model hypothesis: a rewrite of the model and/or a wrong way of running it."""

    description: str
    rewrite: Optional[Callable[[SequenceModel], SequenceModel]] = None
    deviation: Deviation = NO_DEVIATION
    swap_axes: bool = False  # batch and time axes exchanged on the way in and out


def order_name(perm: tuple) -> str:
    """The gate order a permutation produces, e.g. (0, 3, 1, 2) -> "i,o,f,g"."""
    return ",".join(CANONICAL[p] for p in perm)


def gate_orders(all_orders: bool) -> list:
    """(perm, hint) pairs: the known ones, or all 23 non-identity orders of four blocks."""
    if not all_orders:
        return list(_KNOWN_ORDERS.items())
    perms = [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]
    return [(p, _KNOWN_ORDERS.get(p, "")) for p in perms]


def direction_bugs(direction: LSTMDirection, all_orders: bool) -> list:
    """Every catalogued bug that would change ``direction`` (zero or absent weights are skipped)."""
    bugs = []
    nonzero = {name: a is not None and np.any(a != 0) for name, a in direction.arrays().items()}
    for perm, hint in gate_orders(all_orders):
        bugs.append(DirectionBug(f"gate blocks permuted as {order_name(perm)}", hint, _permuted(perm, _GATED)))
        if perm in (gates.TO_ONNX, gates.FROM_ONNX) and direction.has_bias:
            bugs.append(DirectionBug(f"bias gate blocks permuted as {order_name(perm)}", hint, _permuted(perm, ("b_ih", "b_hh"))))
    has_ih, has_hh = nonzero.get("b_ih", False), nonzero.get("b_hh", False)
    if has_ih and has_hh:
        bugs += [
            DirectionBug("b_hh added twice", "single bias b_ih+b_hh written and b_hh kept too?", _bias(lambda i, h: (i + h, h))),
            DirectionBug("b_ih dropped", "only the recurrent bias written?", _bias(lambda i, h: (None, h))),
            DirectionBug("b_hh dropped", "only the input bias written (not folded into it)?", _bias(lambda i, h: (i, None))),
        ]
    if has_ih or has_hh:
        bugs += [
            DirectionBug("bias counted twice", "b_ih+b_hh folded and then added again?", _bias(_doubled)),
            DirectionBug("bias dropped", "", _bias(lambda i, h: (None, None))),
        ]
    gate_act = direction.activations[0]
    for replacement, hint in _activation_swaps(gate_act):
        bugs.append(DirectionBug(f"gate activation is {replacement} instead of {gate_act}", hint, _gate_activation(replacement)))
    return bugs


_GATED = ("w_ih", "w_hh", "b_ih", "b_hh")


def _permuted(perm: tuple, names: tuple) -> Callable[[LSTMDirection], LSTMDirection]:
    def apply(direction: LSTMDirection) -> LSTMDirection:
        out = copy.copy(direction)
        for name in names:
            array = getattr(direction, name)
            if array is not None:
                setattr(out, name, gates.permute_blocks(array, perm, axis=0))
        return out

    return apply


def _doubled(b_ih, b_hh):
    return (None if b_ih is None else b_ih * 2, None if b_hh is None else b_hh * 2)


def _bias(change: Callable) -> Callable[[LSTMDirection], LSTMDirection]:
    def apply(direction: LSTMDirection) -> LSTMDirection:
        out = copy.copy(direction)
        out.b_ih, out.b_hh = change(direction.b_ih, direction.b_hh)
        return out

    return apply


def _gate_activation(act: Activation) -> Callable[[LSTMDirection], LSTMDirection]:
    def apply(direction: LSTMDirection) -> LSTMDirection:
        out = copy.copy(direction)
        out.activations = (act,) + tuple(direction.activations[1:])
        return out

    return apply


def _activation_swaps(act: Activation) -> list:
    """Gate activations a format could have been confused into (the Keras hard_sigmoid trap)."""
    if act.name == "sigmoid":
        return [
            (KERAS2_HARD_SIGMOID, "Keras 2 / tf.keras hard_sigmoid, clip(0.2x+0.5)?"),
            (KERAS3_HARD_SIGMOID, "Keras 3 hard_sigmoid, clip(x/6+0.5)?"),
        ]
    if act.name == "hard_sigmoid":
        swaps = [(Activation("sigmoid"), "hard_sigmoid written or run as sigmoid?")]
        for other, hint in ((KERAS2_HARD_SIGMOID, "Keras 3 hard_sigmoid run with Keras 2's slope?"),
                            (KERAS3_HARD_SIGMOID, "Keras 2 hard_sigmoid run with Keras 3's slope?")):
            if not (np.isclose(other.alpha, act.alpha) and np.isclose(other.beta, act.beta)):
                swaps.append((other, hint))
        return swaps
    return []


def model_suspects(model: SequenceModel, max_full_search: int = 4) -> list:
    """Every catalogued bug applied to ``model``: per layer and direction, to all at once, and runtime mix-ups.

    With more than ``max_full_search`` directions only the gate orders with a known story are
    tried, to keep the search quick.
    """
    slots = [(k, d) for k, layer in enumerate(model.layers) for d in range(len(layer.directions))]
    all_orders = len(slots) <= max_full_search
    suspects = []
    by_label: dict = {}
    for k, d in slots:
        direction = model.layers[k].directions[d]
        for bug in direction_bugs(direction, all_orders):
            suspects.append(Suspect(f"{slot_name(model, k, d)}: {bug.describe()}", _rewrite({(k, d)}, bug.apply)))
            by_label.setdefault(bug.label, (bug, []))[1].append((k, d))
    if len(slots) > 1:
        # A writer bug usually hits every layer and direction alike.
        for label, (bug, where) in by_label.items():
            if len(where) > 1:
                suspects.append(Suspect(f"every layer and direction: {bug.describe()}", _rewrite(set(where), bug.apply)))
    suspects += _runtime_suspects(model, slots)
    return suspects


def slot_name(model: SequenceModel, k: int, d: int) -> str:
    """``layer 0 forward`` / ``layer 1 reverse`` (a reverse-only layer's one direction is "reverse")."""
    layer = model.layers[k]
    backward = d == 1 or layer.reverse
    return f"layer {k} {'reverse' if backward else 'forward'}"


def _rewrite(where: set, apply: Callable[[LSTMDirection], LSTMDirection]) -> Callable[[SequenceModel], SequenceModel]:
    def rewrite(model: SequenceModel) -> SequenceModel:
        layers = []
        for k, layer in enumerate(model.layers):
            dirs = [apply(dr) if (k, d) in where else dr for d, dr in enumerate(layer.directions)]
            layers.append(copy.copy(layer))
            layers[-1].directions = dirs
        return model.replace(layers=layers)

    return rewrite


def _runtime_suspects(model: SequenceModel, slots: list) -> list:
    out = []
    for k, d in slots:
        layer = model.layers[k]
        name = slot_name(model, k, d)
        backward = d == 1 or layer.reverse
        if backward:
            out.append(Suspect(f"{name}: runs forward in time (its input never reversed?)",
                               deviation=Deviation(wrong_time_order=frozenset({(k, d)}))))
        else:
            out.append(Suspect(f"{name}: runs backward in time (marked reverse/go_backwards by mistake?)",
                               deviation=Deviation(wrong_time_order=frozenset({(k, d)}))))
        if d == 1:
            out.append(Suspect(f"{name}: output left in reversed time order (never flipped back?)",
                               deviation=Deviation(unflipped_output=frozenset({(k, d)}))))
        if layer.reverse:
            out.append(Suspect(f"{name}: output time order of the go_backwards layer mishandled (Keras returns it reversed)",
                               rewrite=_toggle_reversed_output(k)))
    for k, layer in enumerate(model.layers):
        if layer.bidirectional and layer.merge == "concat":
            out.append(Suspect(f"layer {k}: directions concatenated backward first",
                               deviation=Deviation(swapped_halves=frozenset({k}))))
    if model.masked:
        out.append(Suspect("padding steps are processed as real steps (masking / sequence lengths lost)",
                           deviation=Deviation(ignore_mask=True)))
    if model.readout == "sequence":
        out.append(Suspect("batch and time axes swapped (batch_first / layout handled wrongly?)", swap_axes=True))
    return out


def _toggle_reversed_output(k: int) -> Callable[[SequenceModel], SequenceModel]:
    def rewrite(model: SequenceModel) -> SequenceModel:
        layers = list(model.layers)
        layers[k] = copy.copy(layers[k])
        layers[k].reversed_output = not layers[k].reversed_output
        return model.replace(layers=layers)

    return rewrite
