"""How a node is named in messages and how its arguments are read, in every opset.

A leaf module (it imports only onnx and numpy): the graph index, the symbolic shape evaluator, the
reader's op handlers and the LSTM decoder all read node arguments, and keeping these helpers below
them all is what keeps those modules free of import cycles.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx


def describe(node: onnx.NodeProto) -> str:
    """How error messages name a node: op type and name."""
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node producing {node.output[0]!r}"


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The attribute ``name`` of ``node`` as a Python value (strings decoded), or ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list) and value and isinstance(value[0], bytes):
                return [v.decode() for v in value]
            return value
    return default


def axes_argument(node: onnx.NodeProto, args: list, opset: int, input_index: int = 1) -> Optional[list]:
    """The ``axes`` of Squeeze/Unsqueeze/Reduce*: an attribute in old opsets, an input in new ones."""
    value = attribute(node, "axes")
    if value is not None:
        return [int(a) for a in value]
    if len(args) > input_index and args[input_index] is not None:
        return [int(a) for a in np.asarray(args[input_index]).reshape(-1)]
    return None


def slice_arguments(node: onnx.NodeProto, args: list, rank: int) -> list:
    """(axis, start, end, step) per sliced axis for Slice in any opset."""
    if attribute(node, "starts") is not None:  # Slice-1: attributes
        starts, ends = attribute(node, "starts"), attribute(node, "ends")
        axes = attribute(node, "axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = [int(v) for v in args[1]], [int(v) for v in args[2]]
        axes = [int(v) for v in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    return [(a % rank if rank else a, int(s), int(e), int(st)) for a, s, e, st in zip(axes, starts, ends, steps)]


def clamp_slice(start: int, end: int, step: int, size: int) -> tuple:
    """ONNX Slice bounds (huge sentinels, negatives) as Python slice bounds."""
    def clamp(v: int, lo: int, hi: int) -> int:
        if v < 0:
            v += size
        return max(lo, min(hi, v))
    if step > 0:
        return clamp(start, 0, size), clamp(end, 0, size), step
    start_c = clamp(start, -1, size - 1)
    end_c = clamp(end, -1, size - 1)
    return start_c, (None if end_c < 0 else end_c), step


__all__ = ["describe", "attribute", "axes_argument", "slice_arguments", "clamp_slice"]


def fresh_name(hint: str, used: set) -> str:
    """A name not in ``used`` (``hint``, else ``hint_1``, ``hint_2``...), added to ``used``."""
    name, k = hint, 1
    while name in used:
        name = f"{hint}_{k}"
        k += 1
    used.add(name)
    return name
