"""The consumer walk's view of ops that pass a widened value on: shape-only, elementwise, softmax, reductions.

Each handler takes (EditContext, node, per-input ``Wide`` or None) and returns ``{output: Wide}``
for the outputs that still carry the widened features; it raises UnsupportedError, naming the node,
for what it cannot follow. The helpers at the top are shared with ``consumer_walk``.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...errors import UnsupportedError
from .edit_context import EditContext
from .graph_index import attribute, axes_argument, describe, slice_arguments
from .symbolic import Dim
from .wide_values import Wide

_UNARY = {"Identity", "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Selu", "Celu", "Neg", "Abs", "Exp", "Erf",
          "Gelu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Clip", "Cast",
          "Dropout", "Sin", "Cos", "Sign", "Round", "Floor", "Ceil"}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "PRelu", "Where"}
_REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSumExp", "ReduceSumSquare"}
_SOFTMAX = {"Softmax", "LogSoftmax", "Hardmax"}


def unknown(node: onnx.NodeProto):
    domain = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
    raise UnsupportedError(
        f"{describe(node)}{domain} reads a widened LSTM output, and in-place widening does not know how "
        f"{node.op_type} treats its features, so it cannot widen past it")


def unknown_handler(ctx, node, states):
    unknown(node)


def dims_of(ctx: EditContext, name: str):
    value = ctx.index.const(name)
    if value is not None:
        return list(value.shape)
    return ctx.index.static_dims(name)


def mixing(ctx: EditContext, node: onnx.NodeProto, why: str) -> None:
    """A node that mixes forward and backward features: refused, or (preserve=False) noted as lossy."""
    if ctx.request.preserve:
        raise UnsupportedError(
            f"{describe(node)} {why}, so the widened model cannot compute what the source did; "
            "--no-preserve widens it anyway")
    ctx.lossy.append(f"{describe(node)} {why}")


def unused_extra_outputs(node: onnx.NodeProto, ctx: EditContext) -> None:
    for name in node.output[1:]:
        if name and (name in ctx.index.consumers or name in {o.name for o in ctx.graph.output}):
            raise UnsupportedError(f"{describe(node)}: its output {name!r} is used; only the first can be widened")


def through(ctx: EditContext, node: onnx.NodeProto, state: Wide, change: str = "") -> dict:
    width = state.widened_size(ctx.request.merge)
    ctx.mark(node, "through", change or (f"feature axis {state.axis}: {state.size} -> {width}"
                                         if width != state.size else ""))
    return {node.output[0]: state}


def repeat_blocks(array: np.ndarray, axis: int, state: Wide) -> np.ndarray:
    """``array`` with a copy of each forward block after it on ``axis`` (per-feature constants)."""
    pieces, cursor = [], 0
    for block in state.blocks:
        end = block.start + block.width
        pieces.append(np.take(array, range(cursor, end), axis=axis))
        pieces.append(np.take(array, range(block.start, end), axis=axis))
        cursor = end
    pieces.append(np.take(array, range(cursor, array.shape[axis]), axis=axis))
    return np.concatenate(pieces, axis=axis)


def per_feature(ctx: EditContext, node: onnx.NodeProto, slot: int, axis: int, state: Wide) -> bool:
    """Widen a per-feature constant input by copying its forward values; False if it has no such axis."""
    if ctx.request.merge != "concat" or slot >= len(node.input) or not node.input[slot]:
        return False
    value = ctx.value(node, slot)
    if value is None:
        raise UnsupportedError(f"{describe(node)}: its input {node.input[slot]!r} is computed at run time and has "
                               "one entry per LSTM feature; it cannot be widened")
    if axis < 0 or axis >= value.ndim or value.shape[axis] == 1:
        return False
    if value.shape[axis] != state.size:
        raise UnsupportedError(f"{describe(node)}: its input {node.input[slot]!r} has {value.shape[axis]} entries on "
                               f"the widened axis, which has {state.size}")
    ctx.set_weight(node, slot, repeat_blocks(value, axis, state))
    return True


def _unary(ctx, node, states):
    if any(states[1:]):
        raise UnsupportedError(f"{describe(node)}: a widened value is one of its parameters")
    if node.op_type == "Dropout":
        unused_extra_outputs(node, ctx)
    return through(ctx, node, states[0])


def _broadcast(ctx, node, states):
    if node.op_type == "Div" and states[1] is not None:
        raise UnsupportedError(f"{describe(node)}: divides by a widened LSTM output, which can be zero in the backward half")
    if node.op_type == "Where" and states[0] is not None:
        unknown(node)
    ranks = []
    for name, state in zip(node.input, states):
        if not name:
            continue
        dims = dims_of(ctx, name) if state is None else None
        if state is None and dims is None:
            raise UnsupportedError(f"{describe(node)}: cannot tell how its input {name!r} broadcasts against the widened value")
        ranks.append(state.rank if state else len(dims))
    out_rank = max(ranks)
    target = None
    for state in filter(None, states):
        aligned = state.moved(out_rank, state.axis + out_rank - state.rank)
        if target is not None and aligned != target:
            raise UnsupportedError(f"{describe(node)}: combines widened values whose features do not line up")
        target = aligned
    edited = []
    for slot, (name, state) in enumerate(zip(node.input, states)):
        if not name or state is not None:
            continue
        dims = dims_of(ctx, name)
        position = target.axis - (out_rank - len(dims))
        if position < 0 or dims[position] == 1:
            continue
        if dims[position] != target.size:
            raise UnsupportedError(f"{describe(node)}: its input {name!r} has {dims[position]} entries on the widened axis")
        if ctx.index.const(name) is None:
            raise UnsupportedError(f"{describe(node)}: combines the widened features with {name!r}, computed at run "
                                   "time with one value per feature, which cannot be widened")
        if per_feature(ctx, node, slot, position, target):
            edited.append(repr(name))
    change = f"constant {', '.join(edited)} repeated for the backward half" if edited else ""
    return through(ctx, node, target, change)


def _squeeze(ctx, node, states):
    state = states[0]
    axes = axes_argument(node, [None] + [ctx.index.const(n) for n in node.input[1:]], ctx.opset)
    if axes is None:
        dims = dims_of(ctx, node.input[0])
        if dims is None or None in dims:
            raise UnsupportedError(f"{describe(node)}: squeezes every axis of size 1, and the sizes are not known")
        axes = [k for k, d in enumerate(dims) if d == 1]
    axes = [a % state.rank for a in axes]
    if state.axis in axes:
        raise UnsupportedError(f"{describe(node)}: squeezes the widened feature axis")
    return through(ctx, node, state.moved(state.rank - len(axes), state.axis - sum(a < state.axis for a in axes)))


def _unsqueeze(ctx, node, states):
    state = states[0]
    axes = axes_argument(node, [None] + [ctx.index.const(n) for n in node.input[1:]], ctx.opset)
    if axes is None:
        raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
    out_rank = state.rank + len(axes)
    inserted = {a % out_rank for a in axes}
    kept = [k for k in range(out_rank) if k not in inserted]
    return through(ctx, node, state.moved(out_rank, kept[state.axis]))


def _transpose(ctx, node, states):
    state = states[0]
    perm = attribute(node, "perm") or list(reversed(range(state.rank)))
    return through(ctx, node, state.moved(state.rank, list(perm).index(state.axis)))


def _merged_steps(ctx, node, state: Wide, out_last) -> tuple:
    """(k, first axis): the output's last axis is ``k`` whole input rows of features, from static axes."""
    if out_last is None or out_last % state.size:
        raise UnsupportedError(f"{describe(node)}: cannot tell how it reshapes the widened feature axis")
    k = out_last // state.size
    if k == 1:
        return 1, state.axis
    dims = dims_of(ctx, node.input[0]) or []
    product, first = 1, state.axis
    while product < k and first > 0 and first - 1 < len(dims) and dims[first - 1] is not None:
        first -= 1
        product *= dims[first]
    if product != k:
        raise UnsupportedError(f"{describe(node)}: merges the widened features with axes of unknown size")
    return k, first


def _reshape(ctx, node, states):
    state = states[0]
    if states[1] is not None:
        unknown(node)
    if state.axis != state.rank - 1:
        raise UnsupportedError(f"{describe(node)}: reshapes a value whose widened features are not on its last axis")
    shape = ctx.value(node, 1)
    if shape is None:
        return _reshape_to_computed_shape(ctx, node, state)
    shape = [int(s) for s in shape]
    last = shape[-1]
    if last == 0:
        if len(shape) != state.rank:
            raise UnsupportedError(f"{describe(node)}: copies an axis (0) other than the widened feature axis last")
        k = 1
    elif last == -1:
        out_dims = ctx.index.static_dims(node.output[0])
        k, _ = _merged_steps(ctx, node, state, out_dims[-1] if out_dims else None)
    else:
        k, _ = _merged_steps(ctx, node, state, last)
    new_state = state.moved(len(shape), len(shape) - 1) if k == 1 else state.repeated(k, len(shape), len(shape) - 1)
    change = ""
    if last > 0 and ctx.request.merge == "concat":
        new_shape = shape[:-1] + [new_state.widened_size("concat")]
        ctx.set_weight(node, 1, np.array(new_shape, dtype=np.int64))
        change = f"target shape {shape} -> {new_shape}"
    return through(ctx, node, new_state, change)


_FEATURES = "widened features"  # the symbol for the feature width when a shape is computed at run time


def _reshape_to_computed_shape(ctx, node, state: Wide) -> dict:
    """A target shape computed from ``Shape`` of the data (dynamo exports): fine if it carries the width along.

    The shape program is evaluated symbolically with the widened axis as a symbol: a last entry of
    ``k * features`` follows the new width by itself at run time; a width computed as a plain number
    would not, and is refused.
    """
    def dims_of(name: str):
        seen = ctx.wide.get(name)
        static = ctx.index.static_dims(name)
        if static is None:
            return None
        dims = [Dim(d) if d is not None else Dim(1, (f"{name}:{k}",)) for k, d in enumerate(static)]
        if seen is not None:
            dims[seen.axis] = Dim(1, (_FEATURES,))
        return dims

    target = ctx.index.shape_vector(node.input[1], dims_of)
    if not target:
        raise UnsupportedError(f"{describe(node)}: its target shape is computed at run time in a way that cannot be "
                               "followed, so the widened feature width cannot be placed in it")
    last = target[-1]
    if any(_FEATURES in d.atoms for d in target[:-1]) or (last.known and last.coef != -1) or \
            (not last.known and last.atoms != (_FEATURES,)):
        raise UnsupportedError(f"{describe(node)}: its run-time target shape {[str(d) for d in target]} does not keep "
                               "the widened features on the last axis")
    if last.known:  # -1: the features and whatever the other entries leave
        out_dims = ctx.index.static_dims(node.output[0])
        k, _ = _merged_steps(ctx, node, state, out_dims[-1] if out_dims else None)
    else:
        k, _ = _merged_steps(ctx, node, state, last.coef * state.size)
    rank = len(target)
    return through(ctx, node, state.moved(rank, rank - 1) if k == 1 else state.repeated(k, rank, rank - 1))


def _flatten(ctx, node, states):
    state = states[0]
    if state.axis != state.rank - 1:
        raise UnsupportedError(f"{describe(node)}: flattens a value whose widened features are not on its last axis")
    axis = attribute(node, "axis", 1) % max(state.rank, 1)
    dims = dims_of(ctx, node.input[0]) or [None] * state.rank
    merged = dims[axis:state.rank - 1]
    if None in merged:
        raise UnsupportedError(f"{describe(node)}: merges the widened features with axes of unknown size")
    k = int(np.prod(merged)) if merged else 1
    return through(ctx, node, state.repeated(k, 2, 1) if k > 1 else state.moved(2, 1))


def _concat(ctx, node, states):
    wide = [s for s in states if s]
    rank = wide[0].rank
    axis = attribute(node, "axis") % rank
    if axis != wide[0].axis or any(s.axis != axis for s in wide):
        if any(s is None for name, s in zip(node.input, states) if name) or any(s != wide[0] for s in wide):
            raise UnsupportedError(f"{describe(node)}: concatenates a widened value with others along a non-feature axis")
        return through(ctx, node, wide[0])
    blocks, offset = [], 0
    for name, state in zip(node.input, states):
        if not name:
            continue
        if state is None:
            dims = dims_of(ctx, name)
            if not dims or dims[axis] is None:
                raise UnsupportedError(f"{describe(node)}: the size of its input {name!r} on the feature axis is unknown")
            offset += dims[axis]
            continue
        blocks += state.shifted(offset, 0).blocks
        offset += state.size
    return through(ctx, node, Wide(rank, axis, tuple(blocks), offset))


def _split(ctx, node, states):
    state = states[0]
    if any(states[1:]) or attribute(node, "axis", 0) % state.rank == state.axis:
        raise UnsupportedError(f"{describe(node)}: splits the widened feature axis")
    ctx.mark(node, "through")
    return {name: state for name in node.output if name}


def _slice(ctx, node, states):
    state = states[0]
    args = [None] + [ctx.index.const(n) if n else None for n in node.input[1:]]
    if any(n and a is None for n, a in zip(node.input[1:], args[1:])):
        raise UnsupportedError(f"{describe(node)}: its bounds are computed at run time")
    for axis, start, end, step in slice_arguments(node, args, state.rank):
        if axis == state.axis and not (start == 0 and end >= state.size and step == 1):
            raise UnsupportedError(f"{describe(node)}: slices the widened feature axis")
    return through(ctx, node, state)


def _gather(ctx, node, states):
    state = states[0]
    if state is None or states[1] is not None:
        raise UnsupportedError(f"{describe(node)}: uses a widened value as indices")
    axis = attribute(node, "axis", 0) % state.rank
    if axis == state.axis:
        raise UnsupportedError(f"{describe(node)}: picks entries of the widened feature axis")
    indices = dims_of(ctx, node.input[1])
    if indices is None:
        raise UnsupportedError(f"{describe(node)}: the rank of its indices is unknown")
    rank = state.rank - 1 + len(indices)
    return through(ctx, node, state.moved(rank, state.axis if state.axis < axis else state.axis - 1 + len(indices)))


def _softmax(ctx, node, states):
    state = states[0]
    default = -1 if ctx.opset >= 13 else 1
    axis = attribute(node, "axis", default) % state.rank
    # Before opset 13 the op flattens every axis from ``axis`` on into one.
    mixes = state.axis == axis if ctx.opset >= 13 else state.axis >= axis
    if mixes:
        mixing(ctx, node, "normalizes over the widened features")
    return through(ctx, node, state)


def _reduce(ctx, node, states):
    state = states[0]
    axes = axes_argument(node, [None] + [ctx.index.const(n) if n else None for n in node.input[1:]], ctx.opset)
    if axes is None and len(node.input) > 1 and node.input[1]:
        raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
    if axes is None or not axes:
        if attribute(node, "noop_with_empty_axes", 0):
            return through(ctx, node, state)
        axes = list(range(state.rank))
    axes = [a % state.rank for a in axes]
    if state.axis in axes:
        mixing(ctx, node, "reduces over the widened features")
        return {}
    if attribute(node, "keepdims", 1):
        return through(ctx, node, state)
    return through(ctx, node, state.moved(state.rank - len(axes), state.axis - sum(a < state.axis for a in axes)))


def _reverse_sequence(ctx, node, states):
    state = states[0]
    if states[1] is not None:
        raise UnsupportedError(f"{describe(node)}: uses a widened value as sequence lengths")
    axes = (attribute(node, "batch_axis", 1) % state.rank, attribute(node, "time_axis", 0) % state.rank)
    if state.axis in axes:
        raise UnsupportedError(f"{describe(node)}: reverses along the widened feature axis")
    return through(ctx, node, state)


def _pool(ctx, node, states):
    """Pooling runs per channel (axis 1): over time it passes the widened channels on."""
    state = states[0]
    unused_extra_outputs(node, ctx)
    if state.axis != 1:
        mixing(ctx, node, "pools across the widened features")
        return {}
    return through(ctx, node, state)


def _shape(ctx, node, states):
    ctx.mark(node, "through", "reads the shape only")
    return {}


SHAPE_HANDLERS = {op: _unary for op in _UNARY}
SHAPE_HANDLERS.update({op: _broadcast for op in _BROADCAST})
SHAPE_HANDLERS.update({op: _reduce for op in _REDUCE})
SHAPE_HANDLERS.update({op: _softmax for op in _SOFTMAX})
SHAPE_HANDLERS.update({
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Transpose": _transpose, "Reshape": _reshape, "Flatten": _flatten,
    "Concat": _concat, "Split": _split, "Slice": _slice, "Gather": _gather, "Shape": _shape,
    "ReverseSequence": _reverse_sequence,
})
SHAPE_HANDLERS.update({op: _pool for op in ("MaxPool", "AveragePool", "LpPool", "GlobalMaxPool",
                                            "GlobalAveragePool", "GlobalLpPool")})
