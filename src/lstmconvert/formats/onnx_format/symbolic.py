"""Symbolic evaluation of the small integer programs exporters use to compute shapes.

Exporters build Reshape targets at run time (``Shape -> Slice -> Mul -> Concat``). Knowing the
target symbolically ("batch, time, 2*5") tells which axes a Reshape merges without running it.
A ``Dim`` is ``coef * atom1 * atom2 ...`` where atoms are the symbolic axes of the data (batch,
time) and ``coef`` a known integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .node_arguments import attribute, clamp_slice, slice_arguments


@dataclass(frozen=True)
class Dim:
    """``coef`` times the product of ``atoms`` (sorted names of symbolic axis sizes)."""

    coef: int = 1
    atoms: tuple = ()

    @staticmethod
    def of(value) -> "Dim":
        return value if isinstance(value, Dim) else Dim(int(value))

    @property
    def known(self) -> bool:
        return not self.atoms

    def __mul__(self, other: "Dim") -> "Dim":
        other = Dim.of(other)
        return Dim(self.coef * other.coef, tuple(sorted(self.atoms + other.atoms)))

    def __str__(self) -> str:
        parts = ([str(self.coef)] if self.coef != 1 or not self.atoms else []) + list(self.atoms)
        return "*".join(parts)


def evaluate_shape_vector(index, name: str, dims_of: Callable[[str], Optional[list]]) -> Optional[list]:
    """``name`` (a 0-D or 1-D integer tensor) as a list of Dim, or None if it cannot be followed.

    ``dims_of(value)`` returns the symbolic shape of a data tensor (the reader's view of it).
    """
    value = index.const(name)
    if value is not None:
        if value.dtype.kind not in "iu":
            return None
        return [Dim(int(v)) for v in np.asarray(value).reshape(-1)]
    if name not in index.producer:
        return None
    node, _ = index.producer[name]
    op = node.op_type
    if op == "Shape":
        dims = dims_of(node.input[0])
        if dims is None:
            return None
        start, end = attribute(node, "start", 0), attribute(node, "end", None)
        return list(dims[start:end])
    if op in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
        return evaluate_shape_vector(index, node.input[0], dims_of)
    if op == "Reshape":
        target = index.const(node.input[1])
        if target is None or np.asarray(target).size > 1:
            return None
        return evaluate_shape_vector(index, node.input[0], dims_of)
    if op == "Concat":
        parts = [evaluate_shape_vector(index, i, dims_of) for i in node.input]
        return None if any(p is None for p in parts) else [d for p in parts for d in p]
    if op == "Gather":
        data = evaluate_shape_vector(index, node.input[0], dims_of)
        where = index.const(node.input[1])
        if data is None or where is None:
            return None
        picks = [int(i) for i in np.asarray(where).reshape(-1)]
        if any(not -len(data) <= i < len(data) for i in picks):
            return None
        return [data[i] for i in picks]
    if op == "Slice":
        data = evaluate_shape_vector(index, node.input[0], dims_of)
        args = [index.const(i) if i else None for i in node.input]
        if data is None or any(a is None for i, a in zip(node.input[1:], args[1:]) if i):
            return None
        for axis, start, end, step in slice_arguments(node, args, 1):
            if axis != 0:
                return None
            data = data[slice(*clamp_slice(start, end, step, len(data)))]
        return data
    if op == "Mul":
        left = evaluate_shape_vector(index, node.input[0], dims_of)
        right = evaluate_shape_vector(index, node.input[1], dims_of)
        if left is None or right is None:
            return None
        if len(left) == 1:
            left = left * len(right)
        if len(right) == 1:
            right = right * len(left)
        if len(left) != len(right):
            return None
        return [a * b for a, b in zip(left, right)]
    if op == "ReduceProd":
        data = evaluate_shape_vector(index, node.input[0], dims_of)
        if data is None:
            return None
        product = Dim(1)
        for d in data:
            product = product * d
        return [product]
    return None
