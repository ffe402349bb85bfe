"""Follow widened LSTM outputs through a graph to the nodes that read them with weights.

The walk visits the graph's nodes in their (topological) order. A node with a widened input either
passes it on (shape-only and elementwise ops, softmax and reductions over other axes, Concat), or is
a consumer whose weights gain zero rows/columns for the backward half (MatMul, Gemm, Conv, LSTM,
GRU, RNN: ``widening.widen_consumer``), or mixes the features (LayerNormalization over them, an
attention-like MatMul of two widened values), which is refused unless ``preserve=False``, or is an
op the walk does not know, which is refused by name. Per-feature constants met on the way (an Add's
bias vector, BatchNormalization's statistics) get a copy of their forward values for the backward
features: whatever the backward half holds reaches the output only through zero weights.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...errors import UnsupportedError
from ...widening import widen_consumer
from .edit_context import EditContext, node_key
from .graph_index import attribute, describe
from .lstm_node import INITIAL_C, INITIAL_H
from .walk_shapes import (SHAPE_HANDLERS, dims_of, mixing, per_feature, through, unknown, unknown_handler,
                          unused_extra_outputs)
from .wide_values import Wide

_ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "DecoderAttention",
              "PackedMultiHeadAttention", "SparseAttention"}
_NORMALIZING = {"GroupNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN",
                "SimplifiedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"}
# With merge "ave" the consumers' weights are doubled to undo the halving; that is exact only if
# everything between the LSTM and them is linear in the LSTM's output.
_LINEAR = {"Identity", "Dropout", "Neg", "Squeeze", "Unsqueeze", "Transpose", "Reshape", "Flatten", "Concat",
           "Split", "Slice", "Gather", "ReduceSum", "ReduceMean", "Mul", "Div", "Shape"}


def walk(ctx: EditContext, seeds: dict) -> dict:
    """Every value that carries a widened output, as {name: Wide}; records the consumers' new weights."""
    wide = ctx.wide = dict(seeds)
    for node in ctx.graph.node:
        states = [wide.get(name) if name else None for name in node.input]
        if not any(states):
            continue
        if node.domain not in ("", "ai.onnx"):
            unknown(node)
        ctx.refused_at = node_key(node)  # until the node is handled: describe_edit shows a refusal on it
        if ctx.request.merge == "ave" and node.op_type not in _LINEAR | {"MatMul", "Gemm", "Conv", "ConvTranspose",
                                                                         "LSTM", "GRU", "RNN"}:
            if not (node.op_type in ("Add", "Sub", "Sum", "Mean") and all(states[k] for k, n in enumerate(node.input) if n)):
                raise UnsupportedError(
                    f"{describe(node)}: merge 'ave' halves the LSTM output and {node.op_type} between it and its "
                    "consumers is not linear, so doubling the consumers' weights cannot undo it; use --merge concat")
        wide.update(_HANDLERS.get(node.op_type, unknown_handler)(ctx, node, states))
        ctx.refused_at = None
    return wide


def _consumer(ctx: EditContext, node: onnx.NodeProto, slot: int, axis: int, state: Wide, fan_in_rows=False) -> dict:
    """A node that reads the widened features with its weights: zero (or, unpreserved, random) blocks."""
    value = ctx.value(node, slot)
    if value is None:
        raise UnsupportedError(f"{describe(node)}: its weight {node.input[slot]!r} is computed at run time, so "
                               "its rows for the backward half cannot be set")
    axis %= value.ndim
    if value.shape[axis] != state.size:
        raise UnsupportedError(f"{describe(node)}: its weight has {value.shape[axis]} inputs on axis {axis}, but the "
                               f"widened value has {state.size} features")
    new = widen_consumer(value, merge=ctx.request.merge, preserve=ctx.request.preserve, init=ctx.init, axis=axis,
                         blocks=list(state.blocks), fan_in_rows=fan_in_rows)
    ctx.set_weight(node, slot, new)
    if ctx.request.merge == "concat":
        what = "zero" if ctx.request.preserve else "random"
        change = f"weight {node.input[slot]!r}: {what} entries for the backward half on axis {axis} ({list(value.shape)} -> {list(new.shape)})"
    else:
        change = f"weight {node.input[slot]!r}: doubled where it reads the LSTM (merge ave)"
    ctx.mark(node, "consumer", change)
    ctx.consumers.append(node.name or node.output[0])
    return {}


def _matmul(ctx, node, states):
    a, b = states
    other_dims = dims_of(ctx, node.input[1] if a else node.input[0])
    if a and b:
        if a.axis == a.rank - 1 and b.axis == b.rank - 2:
            mixing(ctx, node, "multiplies two widened values over their features (attention-like)")
            ctx.mark(node, "through", "attention-like product over the widened features")
            return {}
        raise UnsupportedError(f"{describe(node)}: multiplies two widened values in a way it cannot follow")
    if other_dims is None:
        raise UnsupportedError(f"{describe(node)}: the rank of its other operand is unknown")
    out_rank = max(len(other_dims), (a or b).rank)
    if a:
        if a.axis == a.rank - 1:
            if ctx.index.const(node.input[1]) is None:
                raise UnsupportedError(f"{describe(node)}: multiplies the widened features by {node.input[1]!r}, "
                                       "computed at run time (attention-like), which cannot be widened")
            return _consumer(ctx, node, 1, 0 if len(other_dims) == 1 else -2, a)
        return through(ctx, node, a.moved(out_rank, a.axis + out_rank - a.rank))
    if b.axis == b.rank - 2:
        raise UnsupportedError(f"{describe(node)}: contracts the widened features of its second operand (attention-like)")
    return through(ctx, node, b.moved(out_rank, b.axis + out_rank - b.rank))


def _gemm(ctx, node, states):
    a = states[0]
    if a is None or any(states[1:]) or a.axis != (0 if attribute(node, "transA", 0) else 1):
        raise UnsupportedError(f"{describe(node)}: reads the widened features other than as its input A's columns")
    return _consumer(ctx, node, 1, 1 if attribute(node, "transB", 0) else 0, a)


def _conv(ctx, node, states):
    x = states[0]
    if x is None or any(states[1:]) or x.axis != 1 or attribute(node, "group", 1) != 1:
        raise UnsupportedError(f"{describe(node)}: reads the widened features other than as the input channels of "
                               "an ungrouped convolution")
    return _consumer(ctx, node, 1, 0 if node.op_type == "ConvTranspose" else 1, x)


def _recurrent(ctx, node, states):
    states = list(states)
    if node.op_type == "LSTM":
        for slot in (INITIAL_H, INITIAL_C):
            if slot < len(states) and states[slot] is not None:
                _forward_state(ctx, node, slot, states[slot])
                states[slot] = None
        if not any(states):
            return {}
    x = states[0]
    if x is None or any(states[1:]) or x.rank != 3 or x.axis != 2:
        raise UnsupportedError(f"{describe(node)}: reads the widened features other than as its input X")
    return _consumer(ctx, node, 1, 2, x, fan_in_rows=node.op_type == "LSTM")


def _forward_state(ctx: EditContext, node: onnx.NodeProto, slot: int, state: Wide) -> None:
    """An LSTM starting from a widened LSTM's state (a decoder): it gets the source features back, the
    forward direction's state, through a Gather before it; it stays as it was."""
    if ctx.request.merge != "concat":
        raise UnsupportedError(f"{describe(node)}: starts from a widened LSTM's state merged by "
                               f"{ctx.request.merge!r}; only --merge concat keeps the forward state apart")
    positions, shift = [], 0  # where each source feature sits among the widened ones
    ends = {b.start + b.width: b.width for b in state.blocks}
    for feature in range(state.size):
        positions.append(feature + shift)
        shift += ends.get(feature + 1, 0)
    name = node.input[slot]
    forward = ctx.fresh(f"{name}_forward")
    ctx.inserted.setdefault(("before",) + node_key(node), []).append(onnx.helper.make_node(
        "Gather", [name, ctx.constant("forward_features", np.array(positions, np.int64))], [forward],
        name=ctx.fresh("forward_state"), axis=state.axis))
    ctx.renamed_inputs[(node_key(node), slot)] = forward
    ctx.mark(node, "through", "stays unidirectional; starts from the forward direction's state(s), as before")


# -- normalizations ------------------------------------------------------------------------------------
def _batch_norm(ctx, node, states):
    x = states[0]
    if x is None or any(states[1:]):
        raise UnsupportedError(f"{describe(node)}: a widened value is one of its statistics")
    unused_extra_outputs(node, ctx)
    if x.axis != 1:  # normalizes per channel; the features are not its channels
        return through(ctx, node, x)
    edited = [slot for slot in range(1, 5) if per_feature(ctx, node, slot, 0, x)]
    return through(ctx, node, x, "per-channel scale, bias, mean and variance repeated for the backward half"
                    if edited else "")


def _instance_norm(ctx, node, states):
    x = states[0]
    if x is None or any(states[1:]):
        raise UnsupportedError(f"{describe(node)}: a widened value is one of its parameters")
    if x.axis != 1:
        mixing(ctx, node, "normalizes over the widened features")
        return through(ctx, node, x)
    for slot in (1, 2):
        per_feature(ctx, node, slot, 0, x)
    return through(ctx, node, x, "per-channel scale and bias repeated for the backward half")


def _layer_norm(ctx, node, states):
    x = states[0]
    if x is None or any(states[1:]):
        raise UnsupportedError(f"{describe(node)}: a widened value is one of its parameters")
    unused_extra_outputs(node, ctx)
    first = attribute(node, "axis", -1) % x.rank
    if x.axis < first:  # normalizes other axes, feature by feature
        return through(ctx, node, x)
    mixing(ctx, node, "normalizes over the widened features")
    for slot in range(1, len(node.input)):
        value = ctx.value(node, slot)
        if value is not None:
            per_feature(ctx, node, slot, x.axis - x.rank + value.ndim, x)
    return through(ctx, node, x, "scale and bias repeated for the backward half (--no-preserve)")


def _attention(ctx, node, states):
    raise UnsupportedError(f"{describe(node)} is an attention block whose internals are not MatMul nodes the "
                           "widening can see, so its weights on the backward half cannot be set")


def _normalizing(ctx, node, states):
    raise UnsupportedError(f"{describe(node)} normalizes across the widened features, and its parameters cannot "
                           "be widened")


_HANDLERS = dict(SHAPE_HANDLERS)
_HANDLERS.update({op: _attention for op in _ATTENTION})
_HANDLERS.update({op: _normalizing for op in _NORMALIZING})
_HANDLERS.update({
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv,
    "LSTM": _recurrent, "GRU": _recurrent, "RNN": _recurrent,
    "BatchNormalization": _batch_norm, "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm, "RMSNormalization": _layer_norm,
})
