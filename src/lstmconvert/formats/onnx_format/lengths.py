"""``sequence_lens``: computing it from right-padded input (writer) and recognising that (reader).

A masked model counts each sequence's real steps in the graph: a token is real unless it is id 0;
a feature step is real unless every feature equals ``mask_value``. For right-padded batches the
count is the length, so ONNX Runtime's LSTM stops each sequence at its last real step and the
reverse direction starts there, as PyTorch packed sequences and Keras masks do. The pattern is

    lengths = ReduceSum(ReduceMax?(Cast(Not(Equal(input, pad)), int32), feature axis), time axis)

(ReduceMax only for features). A ``sequence_lens`` that comes straight from a graph input is also
recognised; everything else is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto

from ...errors import UnsupportedError
from .flow import INPUT_ATOMS, Lengths
from .graph_index import GraphIndex, attribute, axes_argument, describe

if TYPE_CHECKING:
    from .graph_builder import GraphBuilder

_INTEGER_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
                  TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL}


# -- reading ---------------------------------------------------------------------------------------
def match_lengths(index: GraphIndex, name: str, lstm: onnx.NodeProto) -> Lengths:
    """What feeds an LSTM's ``sequence_lens``; UnsupportedError naming ``lstm`` if unrecognised."""
    where = describe(lstm)
    value = _strip_integer_casts(index, name)
    if any(i.name == value for i in index.inputs):
        return Lengths("input", value)
    reduce_sum = _producer(index, value, "ReduceSum")
    if reduce_sum is None:
        raise UnsupportedError(f"{where}: its sequence_lens is neither a graph input nor a count of padded steps")
    time_axis = _single_reduced_axis(index, reduce_sum)
    inner = _strip_integer_casts(index, reduce_sum.input[0])
    reduce_max = _producer(index, inner, "ReduceMax")
    feature_axis = None
    if reduce_max is not None:
        feature_axis = _single_reduced_axis(index, reduce_max)
        inner = _strip_integer_casts(index, reduce_max.input[0])
    negation = _producer(index, inner, "Not")
    equal = _producer(index, _strip_integer_casts(index, negation.input[0]), "Equal") if negation else None
    if equal is None:
        raise UnsupportedError(f"{where}: its sequence_lens counts something other than non-padding steps")
    operands = [_strip_integer_casts(index, i) for i in equal.input]
    inputs = {i.name: i for i in index.inputs}
    data = [o for o in operands if o in inputs]
    pads = [index.const(o) for o in operands if o not in inputs]
    if len(data) != 1 or len(pads) != 1 or pads[0] is None or pads[0].size != 1:
        raise UnsupportedError(f"{where}: its sequence_lens compares the input with something other than a constant pad value")
    rank = len(inputs[data[0]].type.tensor_type.shape.dim)
    if rank == 3 and feature_axis is not None and feature_axis % 3 == 2 and time_axis in (0, 1, -1, -2):
        time_atom = INPUT_ATOMS[time_axis % 2]
    elif rank == 2 and feature_axis is None and time_axis in (0, 1, -1, -2):
        time_atom = INPUT_ATOMS[time_axis % 2]
    else:
        raise UnsupportedError(f"{where}: its sequence_lens reduces unexpected axes of the input")
    return Lengths("padding", data[0], time_atom=time_atom, pad_value=float(pads[0].reshape(-1)[0]))


def _producer(index: GraphIndex, name: str, op_type: str):
    found = index.producer.get(name)
    return found[0] if found and found[0].op_type == op_type else None


def _strip_integer_casts(index: GraphIndex, name: str) -> str:
    """Follow Identity and Casts to integer/bool types (they keep a count a count)."""
    seen = set()
    while name in index.producer and name not in seen:  # a damaged graph may loop back on itself
        seen.add(name)
        node, _ = index.producer[name]
        if node.op_type == "Identity" or (node.op_type == "Cast" and attribute(node, "to") in _INTEGER_TYPES):
            name = node.input[0]
        else:
            break
    return name


def _single_reduced_axis(index: GraphIndex, node: onnx.NodeProto) -> int:
    args = [index.const(i) if i else None for i in node.input]
    axes = axes_argument(node, args, index.opset)
    if axes is None or len(axes) != 1 or attribute(node, "keepdims", 1) != 0:
        raise UnsupportedError(f"{describe(node)}: a sequence_lens count must reduce one axis without keepdims")
    return axes[0]


# -- writing ---------------------------------------------------------------------------------------
def emit_lengths(b: "GraphBuilder", input_name: str, input_kind: str, time_axis: int, pad_value: float,
                 dtype: np.dtype) -> str:
    """Add the nodes that count the real steps of ``input_name``; return the int32 lengths' name."""
    pad = b.const("pad_value", np.array(pad_value if input_kind == "features" else 0, dtype=dtype))
    real = b.node("Not", [b.node("Equal", [input_name, pad])])
    counts = b.node("Cast", [real], to=TensorProto.INT32)
    if input_kind == "features":
        counts = b.reduce("ReduceMax", counts, 2)  # a step is real if any feature differs
    return b.reduce("ReduceSum", counts, time_axis)
