"""One handler per ONNX op type the reader can place; ``HANDLERS`` maps op types to them.

A handler gets the walk, the node and which of its outputs is asked for, and returns that output's
``Flow``. It reads the node's constant arguments, asks the walk for its data inputs' flows, and
leaves the axis bookkeeping to ``layout`` and the LSTM bookkeeping to ``lstm_stack``. An op type
missing from the table is one the model's shape has no place for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import OutsideNeutralShapeError, UnsupportedError
from . import layout, lstm_stack
from .flow import DenseRecord, Flow, Prefix
from .index_remap import unwrapped_ids
from .node_arguments import attribute, axes_argument, describe, slice_arguments
from .symbolic import Dim

if TYPE_CHECKING:
    from .graph_walk import GraphWalk

ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "Relu": "relu", "Tanh": "tanh"}
_INT_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}


# -- pass-through ops -----------------------------------------------------------------------------
def identity(walk: "GraphWalk", node, out_index: int) -> Flow:
    return walk.data(node)


def dropout(walk: "GraphWalk", node, out_index: int) -> Flow:
    """Inference-mode Dropout passes its input through."""
    if out_index != 0:
        raise UnsupportedError(f"{describe(node)}: its mask output is used")
    if len(node.input) > 2 and node.input[2]:
        training = walk.index.const(node.input[2])
        if training is None or bool(training):
            raise UnsupportedError(f"{describe(node)}: training_mode is not a constant false")
    return walk.data(node)


def cast(walk: "GraphWalk", node, out_index: int) -> Flow:
    """A Cast that changes no number: ids between integer types, or to the type they already have."""
    flow = walk.data(node)
    target = attribute(node, "to")
    if flow.kind == "ids" and target in _INT_TYPES:
        return flow
    if flow.kind != "ids" and onnx.helper.tensor_dtype_to_np_dtype(target) == flow.dtype:
        return flow
    hint = (" (onnxruntime's optimizer inserts such casts to run float16 ops in float32: read the file saved "
            "before optimization)") if node.name.startswith("InsertedPrecisionFreeCast") else ""
    raise UnsupportedError(f"{describe(node)}: casts the data path from {flow.dtype} to "
                           f"{onnx.helper.tensor_dtype_to_np_dtype(target)}, which changes the numbers{hint}")


# -- layout ops -----------------------------------------------------------------------------------
def transpose(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = walk.data(node)
    return layout.transpose(flow, attribute(node, "perm", list(reversed(range(flow.rank)))), describe(node))


def squeeze(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = walk.data(node)
    args = walk.constant_inputs(node)
    if len(node.input) > 1 and node.input[1] and args[1] is None:
        raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
    return layout.squeeze(flow, axes_argument(node, args, walk.index.opset), describe(node))


def unsqueeze(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = walk.data(node)
    axes = axes_argument(node, walk.constant_inputs(node), walk.index.opset)
    if axes is None:
        raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
    return layout.unsqueeze(flow, axes)


def reshape(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = walk.data(node)
    if attribute(node, "allowzero", 0):
        constant = walk.index.const(node.input[1])
        if constant is None or np.any(constant == 0):
            raise UnsupportedError(f"{describe(node)}: allowzero with a zero (or run-time) target dimension")
    target = walk.index.shape_vector(node.input[1], walk.dims_of)
    if target is None:
        raise UnsupportedError(f"{describe(node)}: cannot tell what its target shape is")
    return layout.reshape(flow, target, describe(node))


def flatten(walk: "GraphWalk", node, out_index: int) -> Flow:
    return layout.flatten(walk.data(node), attribute(node, "axis", 1), describe(node))


def slice_(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = walk.data(node)
    args = walk.constant_inputs(node)
    if any(a is None for i, a in zip(node.input[1:], args[1:]) if i):
        raise UnsupportedError(f"{describe(node)}: its bounds are computed at run time")
    for axis, start, end, step in slice_arguments(node, args, flow.rank):
        flow = layout.slice_axis(flow, axis, start, end, step, describe(node))
    return flow


def gather(walk: "GraphWalk", node, out_index: int) -> Flow:
    """A lookup in a constant table (the embedding), or picking directions or a time step."""
    table = walk.index.const(node.input[0])
    if table is not None:
        return _embedding(walk, node, table)
    flow = walk.data(node)
    axis = attribute(node, "axis", 0) % flow.rank
    where = walk.index.const(node.input[1])
    if where is None:
        from_end = _index_from_end(walk, node.input[1], flow, axis)
        if from_end is None:
            raise UnsupportedError(f"{describe(node)}: gathers with indices computed at run time")
        return layout.select(flow, axis, *from_end, describe(node))
    picks = [int(i) for i in np.asarray(where).reshape(-1)]
    return layout.select(flow, axis, picks, np.asarray(where).ndim > 0, describe(node))


def _index_from_end(walk: "GraphWalk", name: str, flow: Flow, axis: int) -> Optional[tuple]:
    """``size(axis) - k`` computed from the tensor's own shape (PyTorch ``y[:, y.shape[1] - 1]``):
    the picks ``[-k]`` and whether the index keeps the axis; None for anything else."""
    found = walk.index.producer.get(name)
    if found is None or found[0].op_type != "Sub":
        return None
    sub = found[0]
    offset = walk.index.const(sub.input[1])
    size = walk.index.shape_vector(sub.input[0], walk.dims_of)
    rank = walk.index.static_dims(name)
    dims = flow.dims()
    if offset is None or offset.size != 1 or size is None or len(size) != 1 or rank is None or dims is None \
            or size[0] != dims[axis]:
        return None
    return [-int(offset.reshape(-1)[0])], len(rank) > 0


def reverse_sequence(walk: "GraphWalk", node, out_index: int) -> Flow:
    """Full-length time reversal (tf2onnx's ReverseV2); per-sequence lengths are refused."""
    flow = walk.data(node)
    atom = layout.reversal_atom(flow, attribute(node, "time_axis", 0), describe(node))
    if _full_length(walk, node.input[1]) != [Dim(1, (atom,))]:
        raise UnsupportedError(f"{describe(node)}: reverses sequences over lengths other than the full time axis")
    return layout.reverse_sequence(flow, atom, describe(node))


def _full_length(walk: "GraphWalk", name: str) -> Optional[list]:
    """``name`` as [Dim] if it is one symbolic length broadcast over the batch (Expand of it)."""
    producer = walk.index.producer
    while name in producer and producer[name][0].op_type in ("Cast", "Identity"):
        name = producer[name][0].input[0]
    if name in producer and producer[name][0].op_type == "Expand":
        return walk.index.shape_vector(producer[name][0].input[0], walk.dims_of)
    return None


# -- merging directions ---------------------------------------------------------------------------
def concat(walk: "GraphWalk", node, out_index: int) -> Flow:
    """LSTM directions (or layers' final states) put together along the direction or feature axis."""
    flows = [walk.flow(i) for i in node.input if i]
    if len(flows) == 1:
        return flows[0]
    axis = attribute(node, "axis") % flows[0].rank
    if any(f.kind != "lstm" for f in flows):
        raise OutsideNeutralShapeError(f"{describe(node)}: concatenates tensors that are not LSTM outputs",
                                       layer=describe(node))
    if len(flows) == 2 and lstm_stack.separate_directions(flows):
        flows = lstm_stack.join_directions(walk, node, flows)
    prefix = lstm_stack.joint_prefix(flows, describe(node))
    return layout.concat(flows, axis, describe(node)).evolve(prefix=prefix)


def reduce_sum(walk: "GraphWalk", node, out_index: int) -> Flow:
    return _reduce_directions(walk, node, "sum")


def reduce_mean(walk: "GraphWalk", node, out_index: int) -> Flow:
    return _reduce_directions(walk, node, "ave")


def _reduce_directions(walk: "GraphWalk", node, merge: str) -> Flow:
    flow = walk.data(node)
    axes = axes_argument(node, walk.constant_inputs(node), walk.index.opset)
    return layout.reduce_directions(flow, axes, attribute(node, "keepdims", 1), merge, describe(node))


def _elementwise_merge(walk: "GraphWalk", node, merge: str) -> Flow:
    """Add/Mul of the two directions of one LSTM (tf2onnx's merge_mode "sum"/"mul")."""
    left, right = walk.flow(node.input[0]), walk.flow(node.input[1])
    if not layout.is_single_direction_pair(left, right):
        raise OutsideNeutralShapeError(f"{describe(node)}: combines tensors that are not the two directions of one "
                                       "LSTM", layer=describe(node))
    prefix = lstm_stack.joint_prefix([left, right], describe(node))
    return left.evolve(entries=left.entries + right.entries, merge=merge, prefix=prefix)


def _halved_sum(walk: "GraphWalk", node, factor: float) -> Flow:
    """``(forward + backward) * 0.5`` or ``/ 2``: a Keras ``merge_mode="ave"`` as tf2onnx writes it."""
    data_slot = 1 if node.op_type == "Mul" and walk.index.const(node.input[0]) is not None else 0
    constant = walk.index.const(node.input[1 - data_slot])
    flow = walk.data(node, data_slot)
    if constant is None or constant.size != 1 or float(constant.reshape(-1)[0]) != factor \
            or flow.kind != "lstm" or flow.merge != "sum" or constant.ndim > flow.rank:
        raise OutsideNeutralShapeError(f"{describe(node)}: scales something other than the sum of an LSTM's two "
                                       "directions by one half (Keras merge_mode='ave')", layer=describe(node))
    return flow.evolve(merge="ave")


# -- embedding, LSTM, head ------------------------------------------------------------------------
def _embedding(walk: "GraphWalk", node, table: np.ndarray) -> Flow:
    try:
        ids = walk.data(node, 1)
    except UnsupportedError:
        source = unwrapped_ids(walk.index, node.input[1], table.shape[0]) if table.ndim == 2 else None
        if source is None:
            raise
        ids = walk.flow(source)
    if ids.kind != "ids" or attribute(node, "axis", 0) != 0 or table.ndim != 2:
        raise UnsupportedError(f"{describe(node)}: a table lookup that is not an embedding of the input ids")
    prefix = Prefix(ids.prefix.input_name, "tokens", embedding_table=np.ascontiguousarray(table),
                    embedding_node=node.name or node.output[0])
    return Flow("features", ids.axes + (("F",),), table.shape[1], table.dtype, prefix)


def lstm(walk: "GraphWalk", node, out_index: int) -> Flow:
    return lstm_stack.lstm_output(walk, node, out_index)


def matmul(walk: "GraphWalk", node, out_index: int) -> Flow:
    weight = walk.index.const(node.input[1])
    if weight is None or weight.ndim != 2:
        raise _not_a_dense_layer(node)
    flow = lstm_stack.settle(walk, walk.data(node), describe(node))
    return _dense(node, flow, np.ascontiguousarray(weight.T), None)


def gemm(walk: "GraphWalk", node, out_index: int) -> Flow:
    flow = lstm_stack.settle(walk, walk.data(node), describe(node))
    weight = walk.index.const(node.input[1])
    if weight is None or weight.ndim != 2:
        raise _not_a_dense_layer(node)
    if attribute(node, "transA", 0) or attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
        raise UnsupportedError(f"{describe(node)}: transA, alpha or beta other than the defaults")
    weight = weight if attribute(node, "transB", 0) else weight.T
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = _bias_vector(walk, node, node.input[2], weight.shape[0])
    return _dense(node, flow, np.ascontiguousarray(weight), bias)


def _not_a_dense_layer(node) -> OutsideNeutralShapeError:
    """A product with a run-time matrix (attention, say): no dense layer of the model's head."""
    return OutsideNeutralShapeError(f"{describe(node)}: multiplies by something other than a constant matrix",
                                    layer=describe(node))


def _dense(node, flow: Flow, weight: np.ndarray, bias: Optional[np.ndarray]) -> Flow:
    """Append a dense layer ``weight (out, in)`` to the head after the LSTM stack."""
    if flow.kind != "features" or flow.readout is None or flow.reversed_atom:
        raise OutsideNeutralShapeError(f"{describe(node)}: a dense layer before the LSTM stack cannot be placed",
                                       layer=describe(node))
    if tuple(a for a in flow.axes[-1] if a != "1") != ("F",) or flow.width != weight.shape[1]:
        raise UnsupportedError(f"{describe(node)}: multiplies axes {layout.axes_text(flow, flow.axes)} by a "
                               f"{weight.shape[1]}x{weight.shape[0]} matrix")
    if weight.dtype != flow.dtype:
        raise UnsupportedError(f"{describe(node)}: weights are {weight.dtype} but its input is {flow.dtype}")
    return flow.evolve(head=flow.head + (DenseRecord(weight=weight, bias=bias),), width=weight.shape[0])


def _bias_vector(walk: "GraphWalk", node, name: str, width: int) -> np.ndarray:
    value = walk.index.const(name)
    if value is None or value.size != width or any(d != 1 for d in value.shape[:-1]) \
            or (value.ndim and value.shape[-1] != width):
        raise UnsupportedError(f"{describe(node)}: adds something other than a constant bias of width {width}")
    return np.ascontiguousarray(value.reshape(width))


def add(walk: "GraphWalk", node, out_index: int) -> Flow:
    """The bias of a MatMul dense layer, or the sum of an LSTM's two directions."""
    constants = [walk.index.const(i) for i in node.input]
    if all(c is None for c in constants):
        return _elementwise_merge(walk, node, "sum")
    data_slot = 0 if constants[0] is None else 1
    flow = walk.data(node, data_slot)
    if flow.kind != "features" or not flow.head or flow.head[-1].bias is not None \
            or flow.head[-1].activation != "linear":
        raise OutsideNeutralShapeError(f"{describe(node)}: adds a constant that is not the bias of a dense layer",
                                       layer=describe(node))
    bias = _bias_vector(walk, node, node.input[1 - data_slot], flow.width)
    if bias.dtype != flow.dtype:
        raise UnsupportedError(f"{describe(node)}: bias is {bias.dtype} but its input is {flow.dtype}")
    return flow.evolve(head=flow.head[:-1] + (replace(flow.head[-1], bias=bias),))


def mul(walk: "GraphWalk", node, out_index: int) -> Flow:
    """A dropout mask of ones, the product of an LSTM's two directions, or half their sum."""
    for k in (0, 1):
        if _is_ones_like(walk, node.input[k], node.input[1 - k]):
            # Keras LSTMs with dropout multiply their input by a mask of ones at inference.
            return walk.data(node, 1 - k)
    if all(walk.index.const(i) is None for i in node.input):
        return _elementwise_merge(walk, node, "mul")
    return _halved_sum(walk, node, 0.5)


def div(walk: "GraphWalk", node, out_index: int) -> Flow:
    return _halved_sum(walk, node, 2.0)


def _is_ones_like(walk: "GraphWalk", name: str, other: str) -> bool:
    """Is ``name`` all ones, shaped so that multiplying ``other`` by it changes nothing?"""
    value = walk.index.const(name)
    if value is not None:
        return value.size == 1 and float(value.reshape(-1)[0]) == 1.0 and value.ndim <= walk.flow(other).rank
    found = walk.index.producer.get(name)
    if found is None or found[0].op_type != "ConstantOfShape":
        return False
    fill = attribute(found[0], "value")
    if fill is None or numpy_helper.to_array(fill).reshape(-1)[0] != 1:
        return False
    shape = walk.index.producer.get(found[0].input[0])
    return (shape is not None and shape[0].op_type == "Shape" and shape[0].input[0] == other
            and attribute(shape[0], "start", 0) == 0 and attribute(shape[0], "end") is None)


def activation(walk: "GraphWalk", node, out_index: int) -> Flow:
    """The activation of the last dense layer of the head."""
    flow = walk.data(node)
    name = ACTIVATIONS[node.op_type]
    if node.op_type == "Softmax":
        axis = attribute(node, "axis", -1 if walk.index.opset >= 13 else 1)
        if axis % flow.rank != flow.rank - 1:
            raise UnsupportedError(f"{describe(node)}: softmax over axis {axis}, not the features")
    if flow.kind != "features" or not flow.head or flow.head[-1].activation != "linear":
        raise OutsideNeutralShapeError(f"{describe(node)}: an activation that does not follow a dense layer cannot "
                                       "be placed", layer=describe(node))
    return flow.evolve(head=flow.head[:-1] + (replace(flow.head[-1], activation=name),))


HANDLERS = {
    "Identity": identity, "Dropout": dropout, "Cast": cast,
    "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Reshape": reshape, "Flatten": flatten,
    "Gather": gather, "Slice": slice_, "ReverseSequence": reverse_sequence,
    "Concat": concat, "ReduceSum": reduce_sum, "ReduceMean": reduce_mean,
    "LSTM": lstm, "MatMul": matmul, "Gemm": gemm, "Add": add, "Mul": mul, "Div": div,
    **{op_type: activation for op_type in ACTIVATIONS},
}
