"""Lookup tables over one ONNX graph, and evaluation of the constant parts of it.

Producers name their tensors arbitrarily (``onnx::LSTM_193``, ``val_42``, ``W0__26``), so nothing
here looks at names: a value is constant if it is an initializer, a ``Constant`` node, or an op from
a small constant-foldable set applied to constants. ``is_zero`` also accepts all-zero tensors whose
shape depends on the input (``ConstantOfShape``/``Expand`` of 0, as exporters build initial states).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import UnsupportedError
# Re-exported: the writer, the LSTM decoder and the length matcher import these from here.
from .node_arguments import attribute, axes_argument, clamp_slice, describe, slice_arguments
from ...limits import FOLD_LIMIT, require_fits
from .static_shapes import input_independent_dims
from .symbolic import Dim, evaluate_shape_vector

_FOLDABLE = {"Constant", "Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Concat",
             "Slice", "Gather", "ConstantOfShape", "Flatten", "Shape", "Expand", "Add", "Sub", "Mul", "Div"}
# Arithmetic is folded only on integers: it computes shapes and slice bounds, never weights.
_INTEGER_ARITHMETIC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}
# Ops that keep an all-zero input all-zero whatever their other (shape) inputs are.
_ZERO_PRESERVING = {"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Slice",
                    "Expand", "Tile", "Gather", "Flatten"}


class GraphIndex:
    """Producers, consumers and constants of one graph (subgraphs are not looked into)."""

    def __init__(self, graph: onnx.GraphProto, opset: int, model: Optional[onnx.ModelProto] = None) -> None:
        self.graph = graph
        self.opset = opset
        self._model = model
        self._static_dims: Optional[dict] = None
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer: dict = {}
        self.consumers: dict = {}
        for node in graph.node:
            for k, name in enumerate(node.output):
                if name:
                    self.producer[name] = (node, k)
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        # Before IR 4 initializers were also listed as inputs; those are not real inputs.
        self.inputs = [i for i in graph.input if i.name not in self.initializers]
        # From IR 4 on, an initializer listed as an input is a default the caller may replace
        # (PyTorch's keep_initializers_as_inputs=True).
        ir_version = model.ir_version if model is not None else 4
        self.overridable = [i.name for i in graph.input if i.name in self.initializers] if ir_version >= 4 else []
        self.outputs = list(graph.output)
        self._const_cache: dict = {}

    # -- constants -------------------------------------------------------------------------------
    def const(self, name: str) -> Optional[np.ndarray]:
        """The value of ``name`` if it is a constant (after folding), else None."""
        if not name:
            return None
        if name not in self._const_cache:
            self._const_cache[name] = self._fold(name)
        return self._const_cache[name]

    def _fold(self, name: str) -> Optional[np.ndarray]:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        if name not in self.producer:
            return None
        node, index = self.producer[name]
        if node.op_type not in _FOLDABLE or node.domain not in ("", "ai.onnx") or index != 0:
            return None
        if node.op_type == "Constant":
            return constant_node_value(node)
        if node.op_type == "Shape":
            return self._fold_shape(node)
        args = [self.const(i) if i else None for i in node.input]
        if node.op_type == "ConstantOfShape":
            if args[0] is None:
                return None
            value = attribute(node, "value")
            fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
            require_fits(f"ConstantOfShape node {node.name!r}", args[0], 1, FOLD_LIMIT)
            return np.full(tuple(int(d) for d in args[0]), fill.reshape(-1)[0], dtype=fill.dtype)
        if any(a is None for i, a in zip(node.input, args) if i):
            return None
        try:
            return fold_op(node, args, self.opset)
        except (ValueError, IndexError, TypeError) as exc:  # numpy's view of an invalid graph
            shapes = ", ".join(str(list(a.shape)) for a in args if a is not None)
            raise UnsupportedError(f"{describe(node)}: cannot be evaluated on its constant inputs of shapes "
                                   f"{shapes} ({exc}); the graph is invalid") from exc

    def _fold_shape(self, node: onnx.NodeProto) -> Optional[np.ndarray]:
        """``Shape`` of a value whose requested axes have the same size for every input."""
        value = self.const(node.input[0])
        dims = list(value.shape) if value is not None else self.static_dims(node.input[0])
        if dims is None:
            return None
        start, end = attribute(node, "start", 0), attribute(node, "end", None)
        picked = dims[start:end]
        if any(d is None for d in picked):
            return None
        return np.array(picked, dtype=np.int64)

    def static_dims(self, name: str) -> Optional[list]:
        """Axis sizes of ``name`` that do not depend on the graph's inputs (None per unknown axis)."""
        if self._static_dims is None:
            self._static_dims = input_independent_dims(self._model) if self._model is not None else {}
        return self._static_dims.get(name)

    def is_zero(self, name: str) -> bool:
        """True if ``name`` is all zeros whatever the graph's input (its shape may vary)."""
        value = self.const(name)
        if value is not None:
            return bool(np.all(value == 0))
        if name not in self.producer:
            return False
        node, _ = self.producer[name]
        if node.op_type == "ConstantOfShape":
            value = attribute(node, "value")
            return value is None or bool(np.all(numpy_helper.to_array(value) == 0))
        if node.op_type in _ZERO_PRESERVING:
            return self.is_zero(node.input[0])
        if node.op_type == "Concat":
            return all(self.is_zero(i) for i in node.input)
        return False

    def shape_vector(self, name: str, dims_of: Callable[[str], list]) -> Optional[list]:
        """A 1-D shape tensor as a list of ``Dim`` (symbolic where it comes from ``Shape`` of data)."""
        return evaluate_shape_vector(self, name, dims_of)


def constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    raise UnsupportedError(f"{describe(node)}: unsupported Constant form")


def fold_op(node: onnx.NodeProto, args: list, opset: int) -> Optional[np.ndarray]:
    """numpy evaluation of a foldable op on constant inputs."""
    op, x = node.op_type, args[0] if args else None
    if op == "Identity":
        return x
    if op == "Cast":
        return x.astype(onnx.helper.tensor_dtype_to_np_dtype(attribute(node, "to")))
    if op == "Reshape":
        shape = [int(s) for s in args[1]]
        allowzero = attribute(node, "allowzero", 0)
        shape = [x.shape[i] if s == 0 and not allowzero else s for i, s in enumerate(shape)]
        return x.reshape(shape)
    if op == "Flatten":
        axis = attribute(node, "axis", 1) % max(x.ndim, 1)
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if op == "Unsqueeze":
        axes = axes_argument(node, args, opset)
        out_rank = x.ndim + len(axes)
        for a in sorted(a % out_rank for a in axes):
            x = np.expand_dims(x, a)
        return x
    if op == "Squeeze":
        axes = axes_argument(node, args, opset)
        return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in axes))
    if op == "Transpose":
        perm = attribute(node, "perm")
        return np.transpose(x, perm)
    if op == "Concat":
        return np.concatenate([np.asarray(a) for a in args], axis=attribute(node, "axis"))
    if op == "Slice":
        index = [slice(None)] * x.ndim
        for axis, start, end, step in slice_arguments(node, args, x.ndim):
            index[axis] = slice(*clamp_slice(start, end, step, x.shape[axis]))
        return x[tuple(index)]
    if op == "Gather":
        return np.take(x, np.asarray(args[1]).astype(np.int64), axis=attribute(node, "axis", 0))
    if op == "Expand":
        shape = tuple(int(d) for d in args[1])
        require_fits(f"Expand node {node.name!r}", np.broadcast_shapes(x.shape, shape), 1, FOLD_LIMIT)
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, shape)).copy()
    if op in _INTEGER_ARITHMETIC or op == "Div":
        a, b = np.asarray(x), np.asarray(args[1])
        if a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
            return None
        if op == "Div":  # ONNX integer division truncates toward zero
            return None if np.any(b == 0) else np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)
        return _INTEGER_ARITHMETIC[op](a, b)
    return None


__all__ = ["GraphIndex", "Dim", "attribute", "describe", "axes_argument", "slice_arguments", "clamp_slice",
           "constant_node_value"]
