"""Axis sizes that are the same whatever the model is fed, found by ONNX's own shape inference.

Unoptimised exports compute some constants at run time from shapes: PyTorch's dynamo exporter
without ``optimize`` slices the LSTM weights at ``Shape(initial_state)[2]`` (the hidden size). To
fold such values, the graph is shape-inferred with every axis of every graph input made symbolic,
so only sizes that cannot depend on the input come out as numbers. The file's own ``value_info``
and declared output shapes are ignored: an exporter may have baked the example's batch size into
them.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ...limits import declared_bytes, file_budget

_SHAPE_TYPES = {TensorProto.INT64, TensorProto.INT32}


def input_independent_dims(model: onnx.ModelProto) -> dict:
    """``{value name: [size or None per axis]}`` for the values whose rank shape inference finds."""
    if any(t.data_location != TensorProto.EXTERNAL and declared_bytes(t.dims, 1) > file_budget(None, t.ByteSize())
           for t in model.graph.initializer):
        return {}  # a weight declaring more than it holds would send inference into huge shapes; it is refused later
    probe = _shape_only_copy(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:  # inference is a convenience here: without it nothing more is folded
        return {}
    dims = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            dims[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return dims


def _shape_only_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with symbolic input axes, no recorded shapes, and weights replaced by typed inputs.

    Integer initializers stay (they are the shape constants inference propagates); float weights
    become graph inputs of the same type and shape, so the copy is small whatever the model's size.
    """
    probe = onnx.ModelProto(ir_version=model.ir_version)
    probe.opset_import.extend(model.opset_import)
    graph = probe.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    weights = {t.name for t in model.graph.initializer}
    for k, graph_input in enumerate(graph.input):
        if graph_input.name in weights:
            continue  # an initializer also listed as an input (keep_initializers_as_inputs)
        for j, dim in enumerate(graph_input.type.tensor_type.shape.dim):
            dim.Clear()
            dim.dim_param = f"__input{k}_axis{j}"
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    listed = {i.name for i in graph.input}
    for tensor in model.graph.initializer:
        if tensor.data_type in _SHAPE_TYPES:
            graph.initializer.append(tensor)
        elif tensor.name not in listed:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return probe

