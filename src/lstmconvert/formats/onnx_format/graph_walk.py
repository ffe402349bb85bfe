"""The walk: what each tensor on the data path holds, found backwards from the graph output.

``GraphWalk.flow(name)`` looks up the node producing ``name`` and hands it to that op type's
handler (``op_handlers.HANDLERS``), which asks for the flows of the node's inputs in turn; flows are
memoised, so a tensor read by several ops is followed once. A graph input starts a flow; an op
without a handler is outside ``[embedding] -> LSTM stack -> [dense head]`` and is refused. The walk
records what it found about the LSTM stack in ``findings`` and changes nothing it has returned.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto

from ...errors import OutsideNeutralShapeError, UnsupportedError
from .flow import Flow, Prefix
from .graph_index import GraphIndex
from .lstm_stack import StackFindings
from .node_arguments import describe
from .op_handlers import HANDLERS

INT_TYPES = {TensorProto.INT32, TensorProto.INT64}


class GraphWalk:
    """Memoised flows of one graph's tensors, and the LSTM stack found on the way."""

    def __init__(self, index: GraphIndex) -> None:
        self.index = index
        self.findings = StackFindings()
        self._flows: dict = {}
        self._active: set = set()

    def flow(self, name: str) -> Flow:
        """What the tensor ``name`` holds (memoised)."""
        if name in self._flows:
            return self._flows[name]
        if name in self._active:
            raise UnsupportedError(f"the graph has a cycle through {name!r}")
        self._active.add(name)
        try:
            result = self._compute(name)
        finally:
            self._active.discard(name)
        self._flows[name] = result
        return result

    def data(self, node: onnx.NodeProto, slot: int = 0) -> Flow:
        """The flow of the node's input ``slot`` (which must be given)."""
        if len(node.input) <= slot or not node.input[slot]:
            raise UnsupportedError(f"{describe(node)}: missing input {slot}")
        return self.flow(node.input[slot])

    def dims_of(self, name: str) -> Optional[list]:
        """Symbolic axis sizes of a data tensor, or None if it is not (or not yet) on the data path."""
        try:
            return self.flow(name).dims()
        except UnsupportedError:
            return None

    def describe_producer(self, name: str) -> str:
        """The node that produces ``name`` as messages name it (or the graph input ``name``)."""
        found = self.index.producer.get(name)
        return describe(found[0]) if found is not None else f"graph input {name!r}"

    def constant_inputs(self, node: onnx.NodeProto) -> list:
        """The node's inputs as constants (None where an input is absent or computed at run time)."""
        return [self.index.const(i) if i else None for i in node.input]

    def _compute(self, name: str) -> Flow:
        index = self.index
        for graph_input in index.inputs:
            if graph_input.name == name:
                return _input_flow(graph_input)
        if name not in index.producer:
            if index.const(name) is not None:
                raise UnsupportedError(f"the model's data path reaches the constant {name!r}, not the graph input")
            raise UnsupportedError(f"nothing in the graph produces {name!r}")
        node, out_index = index.producer[name]
        if node.domain not in ("", "ai.onnx"):
            raise OutsideNeutralShapeError(
                f"{describe(node)} (domain {node.domain!r}) cannot be placed in embedding -> LSTM -> dense",
                layer=describe(node))
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise OutsideNeutralShapeError(
                f"{describe(node)} cannot be placed: lstmconvert reads embedding -> LSTM stack -> dense head",
                layer=describe(node))
        return handler(self, node, out_index)


def _input_flow(graph_input: onnx.ValueInfoProto) -> Flow:
    """A graph input: token ids (batch and time in some order) or features (..., features)."""
    tensor_type = graph_input.type.tensor_type
    dims = tensor_type.shape.dim
    elem = tensor_type.elem_type
    if elem in INT_TYPES:
        if len(dims) != 2:
            raise UnsupportedError(f"the graph input {graph_input.name!r} holds token ids but has rank {len(dims)}, not 2")
        return Flow("ids", (("i0",), ("i1",)), None, np.dtype(np.int64), Prefix(graph_input.name, "tokens"))
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    if len(dims) != 3:
        raise UnsupportedError(f"the graph input {graph_input.name!r} has rank {len(dims)}; features need (batch, time, features)")
    width = dims[2].dim_value if dims[2].HasField("dim_value") else None
    return Flow("features", (("i0",), ("i1",), ("F",)), width, dtype, Prefix(graph_input.name, "features"))
