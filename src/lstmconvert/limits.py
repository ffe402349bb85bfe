"""Refuse absurd sizes a file declares before anything of that size is allocated.

A damaged or hostile file can declare a tensor of 2**40 elements backed by a few bytes: an HDF5 dataset
with a huge shape and no data, a PyTorch tensor expanded over a tiny storage with zero strides, an ONNX
``ConstantOfShape`` or ``Expand`` of a huge constant shape. Reading any of them would try to allocate
terabytes (or fill the machine's memory before failing). Readers call ``require_fits`` at these
allocation points with what the file can really back, so a refused file costs about its own size.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from .errors import ReadError

# Compressed or strided data may legitimately expand beyond its stored bytes; not by more than this.
EXPANSION = 16
SLACK = 1 << 20  # bytes always allowed, so tiny files with small shape constants are never refused
FOLD_LIMIT = 1 << 24  # elements of one constant folded from a graph (shapes, indices, zero states)


def declared_bytes(shape: Sequence[int], itemsize: int) -> int:
    """Bytes a shape declares, in exact integers (no overflow); negative dimensions count as absurd."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        return -1
    return math.prod(dims) * int(itemsize)


def file_budget(path: os.PathLike, stored: Optional[int] = None) -> int:
    """Bytes a file may expand to: ``EXPANSION`` times its size (or the ``stored`` bytes), plus slack."""
    size = stored if stored is not None else os.path.getsize(path)
    return EXPANSION * size + SLACK


def require_fits(what: str, shape: Sequence[int], itemsize: int, budget: int) -> None:
    """Raise a (path-less) ``ReadError`` if ``shape`` needs more than ``budget`` bytes: the file is damaged."""
    needed = declared_bytes(shape, itemsize)
    if 0 <= needed <= budget:
        return
    problem = (f"{what} declares shape {tuple(int(d) for d in shape)}, "
               + ("a negative dimension" if needed < 0 else f"{_human(needed)}, far more than the file can hold "
                  f"({_human(budget)} at most); the file is damaged or not what it claims"))
    raise ReadError(problem)


def _human(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"
