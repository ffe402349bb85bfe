"""One ONNX ``LSTM`` node -> one neutral ``LSTMLayer`` (weights found by input slot, not by name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnx

from ...errors import OutsideNeutralShapeError, UnsupportedError
from ...gates import FROM_ONNX, PEEPHOLE_FROM_ONNX, permute_blocks
from ...model import DEFAULT_ACTIVATIONS, LSTMDirection, LSTMLayer
from . import activations
from .graph_index import GraphIndex, attribute, describe

# Input slots of the LSTM operator.
X, W, R, B, SEQUENCE_LENS, INITIAL_H, INITIAL_C, P = range(8)
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


@dataclass
class DecodedLSTM:
    layer: LSTMLayer
    layout: int
    sequence_lens: Optional[str]  # value name, None if absent


def decode(index: GraphIndex, node: onnx.NodeProto) -> DecodedLSTM:
    """Read ``node``'s weights and attributes; refuse what a neutral layer cannot carry."""
    where = describe(node)
    known = {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta", "clip",
             "input_forget", "layout"}
    for attr in node.attribute:
        if attr.name not in known:
            raise UnsupportedError(f"{where}: unknown attribute {attr.name!r}")
    direction = attribute(node, "direction", "forward")
    if direction not in DIRECTIONS:
        raise UnsupportedError(f"{where}: unknown direction {direction!r}")
    count = DIRECTIONS[direction]
    layout = attribute(node, "layout", 0)
    if layout not in (0, 1):
        raise UnsupportedError(f"{where}: unknown layout {layout}")

    inputs = list(node.input) + [""] * (8 - len(node.input))
    w, r = _weight(index, inputs[W], "W", where), _weight(index, inputs[R], "R", where)
    b = _weight(index, inputs[B], "B", where) if inputs[B] else None
    p = _weight(index, inputs[P], "P", where) if inputs[P] else None
    if w.ndim != 3 or w.shape[0] != count or w.shape[1] % 4:
        raise UnsupportedError(f"{where}: W has shape {list(w.shape)}, expected [{count}, 4*hidden, input]")
    hidden = w.shape[1] // 4
    declared = attribute(node, "hidden_size")
    if declared is not None and declared != hidden:
        raise UnsupportedError(f"{where}: hidden_size={declared} but W has {w.shape[1]} rows (4*{hidden})")
    expect = {"R": (r, (count, 4 * hidden, hidden)), "B": (b, (count, 8 * hidden)), "P": (p, (count, 3 * hidden))}
    for label, (array, shape) in expect.items():
        if array is not None and array.shape != shape:
            raise UnsupportedError(f"{where}: {label} has shape {list(array.shape)}, expected {list(shape)}")
    if w.dtype.kind != "f" and str(w.dtype) != "bfloat16":
        raise UnsupportedError(f"{where}: weights of type {w.dtype} are not floating point")
    for label, array in (("R", r), ("B", b), ("P", p)):
        if array is not None and array.dtype != w.dtype:
            raise UnsupportedError(f"{where}: {label} is {array.dtype} but W is {w.dtype}")

    for slot, label in ((INITIAL_H, "initial_h"), (INITIAL_C, "initial_c")):
        _check_state_shape(index, inputs[slot], label, where, count, hidden, layout)
        _check_zero_state(index, inputs[slot], label, where)

    triples = activations.decode(
        attribute(node, "activations", []), attribute(node, "activation_alpha", []),
        attribute(node, "activation_beta", []), count, where,
    )
    directions = []
    for d in range(count):
        peephole = None
        if p is not None and np.any(p[d] != 0):
            peephole = permute_blocks(p[d], PEEPHOLE_FROM_ONNX)
        directions.append(LSTMDirection(
            w_ih=permute_blocks(w[d], FROM_ONNX),
            w_hh=permute_blocks(r[d], FROM_ONNX),
            b_ih=permute_blocks(b[d, :4 * hidden], FROM_ONNX) if b is not None else None,
            b_hh=_recurrent_bias(b[d, 4 * hidden:]) if b is not None else None,
            peephole=peephole,
            activations=triples[d] or DEFAULT_ACTIVATIONS,
        ))
    clip = attribute(node, "clip")
    if clip is not None and not clip > 0:
        raise UnsupportedError(f"{where}: clip={clip} is not positive")
    input_forget = attribute(node, "input_forget", 0)
    if input_forget not in (0, 1):
        raise UnsupportedError(f"{where}: input_forget={input_forget} is not 0 or 1")
    layer = LSTMLayer(
        directions=directions,
        reverse=direction == "reverse",
        clip=activations.float32_value(clip) if clip is not None else None,
        input_forget=bool(input_forget),
    )
    return DecodedLSTM(layer, layout, inputs[SEQUENCE_LENS] or None)


def _recurrent_bias(half: np.ndarray) -> Optional[np.ndarray]:
    """ONNX Rb; an all-(+0.0) Rb is what single-bias producers (tf2onnx, Keras) write: None."""
    if not half.view(np.uint8).any():
        return None
    return permute_blocks(half, FROM_ONNX)


def _weight(index: GraphIndex, name: str, label: str, where: str) -> np.ndarray:
    if not name:
        raise UnsupportedError(f"{where}: has no {label}")
    value = index.const(name)
    if value is None:
        raise UnsupportedError(f"{where}: its {label} is computed at run time, not a constant")
    return np.ascontiguousarray(value)


def _check_state_shape(index: GraphIndex, name: str, label: str, where: str, count: int, hidden: int,
                       layout: int) -> None:
    """A state must be [directions, batch, hidden] (layout 0) or [batch, directions, hidden] (layout 1).

    Checked even for zero states: PyTorch's dynamo exporter turns ``nn.LSTM(proj_size=P)`` into a
    node whose ``hidden_size`` and W, R, initial_h are sized P while initial_c keeps the real hidden
    size, and the projection is lost. Only that mismatch shows that the weights are not the model's.
    """
    if not name:
        return
    value = index.const(name)
    dims = list(value.shape) if value is not None else index.static_dims(name)
    if dims is None:
        return
    if len(dims) != 3:
        raise UnsupportedError(f"{where}: {label} has rank {len(dims)}, expected 3")
    directions = dims[0] if layout == 0 else dims[1]
    if directions is not None and directions != count:
        raise UnsupportedError(f"{where}: {label} holds {directions} direction(s) but the node has {count}")
    if dims[2] is not None and dims[2] != hidden:
        raise UnsupportedError(
            f"{where}: {label} has hidden size {dims[2]} but W and R have {hidden}: the graph is inconsistent "
            "(PyTorch's dynamo exporter writes such graphs for nn.LSTM with proj_size, dropping the projection, "
            "which ONNX's LSTM cannot express)"
        )


def computed_state(index: GraphIndex, name: str) -> bool:
    """Whether an initial state ``name`` is computed in the graph (a decoder fed an encoder's state):
    not absent or zero, not a graph input (the caller's state), not a constant."""
    return bool(name) and not index.is_zero(name) and index.const(name) is None and \
        not any(i.name == name for i in index.inputs)


def _check_zero_state(index: GraphIndex, name: str, label: str, where: str) -> None:
    if not name or index.is_zero(name):
        return
    if not computed_state(index, name):
        source = f"comes from the graph input {name!r}" if index.const(name) is None else "is a non-zero constant"
        raise UnsupportedError(f"{where}: {label} {source}; only zero initial states are supported")
    # A decoder starting from an encoder's states: a model of more than an LSTM stack, which in-place
    # widening keeps (it widens the encoder, not the decoder).
    raise OutsideNeutralShapeError(f"{where}: {label} is computed in the graph; an LSTM stack starts from zero states",
                                   f"{where} starting from computed states")
