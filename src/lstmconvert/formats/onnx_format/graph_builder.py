"""A graph builder that accumulates nodes and initializers with unique, readable names."""

from __future__ import annotations

from typing import Union

import numpy as np
import onnx
from onnx import numpy_helper

from .node_arguments import fresh_name
from .weight_stream import PendingTensor

# Float initializers from this size on are written by weight_stream, straight from numpy memory.
PENDING_BYTES = 1 << 16


class GraphBuilder:
    """Collects the nodes and initializers of one graph."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.pending: list = []  # large weights, written by weight_stream without protobuf copies
        self._used: set = set()

    def fresh(self, hint: str) -> str:
        """A name not used yet, based on ``hint``."""
        return fresh_name(hint, self._used)

    def reserve(self, name: str) -> None:
        self._used.add(name)

    def const(self, hint: str, array: np.ndarray) -> str:
        """Store ``array`` as an initializer (bit for bit) and return its name."""
        # Not np.ascontiguousarray: it turns a scalar into a 1-element vector, which changes what
        # Gather and the like compute.
        array = np.asarray(array)
        is_float = array.dtype.kind == "f" or array.dtype.name == "bfloat16"
        if is_float and array.ndim and array.nbytes >= PENDING_BYTES:
            return self.const_parts(hint, [array], array.shape, array.dtype)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(order="C"), name))
        return name

    def const_parts(self, hint: str, parts: list, shape: tuple, dtype: np.dtype) -> str:
        """An initializer of ``shape`` whose bytes are ``parts`` one after another (no copy made)."""
        name = self.fresh(hint)
        data_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self.pending.append(PendingTensor(name, tuple(int(n) for n in shape), data_type, list(parts)))
        return name

    def node(self, op: str, inputs: list, outputs: int = 1, name: str = "", **attrs) -> Union[str, list]:
        """Add ``op``; returns its output name (a list when ``outputs`` > 1; "" leaves an output unused)."""
        node_name = self.fresh(name or op)
        out_names = [self.fresh(f"{node_name}_out{k}" if outputs > 1 else f"{node_name}_out") for k in range(outputs)]
        # Trailing unused optional inputs are dropped, as the ONNX spec allows.
        while inputs and inputs[-1] == "":
            inputs = inputs[:-1]
        self.nodes.append(onnx.helper.make_node(op, inputs, out_names, name=node_name, **attrs))
        return out_names if outputs > 1 else out_names[0]

    def rename_output(self, old: str, new: str) -> None:
        """Give the value ``old`` (produced by a node, consumed by none) the graph-output name ``new``."""
        for node in self.nodes:
            for k, value in enumerate(node.output):
                if value == old:
                    node.output[k] = new
                    self._used.add(new)
                    return
        raise KeyError(old)

    def reduce(self, op: str, data: str, axis: int) -> str:
        """``op`` (ReduceSum/Mean/Max) over one axis without keepdims, in this opset's form."""
        # ReduceSum takes its axes as an input from opset 13, the other reductions from opset 18.
        if op == "ReduceSum" or self.opset >= 18:
            return self.node(op, [data, self.const("axes", np.array([axis], dtype=np.int64))], keepdims=0)
        return self.node(op, [data], axes=[axis], keepdims=0)
