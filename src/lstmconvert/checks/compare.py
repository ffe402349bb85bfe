"""Tolerances, error statistics and the compared part of an output, for comparing two runtimes' outputs.

An element passes when ``|actual - expected| <= atol + rtol * |expected|`` (numpy's ``allclose``
rule). The defaults depend on the dtype the models compute in: two runtimes never sum in the same
order, so even a bit-exact conversion differs by a few units in the last place per step, and the
error grows with depth and sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from ..model import SequenceModel
    from .inputs import InputCase

# dtype name -> (atol, rtol). fp32 stays near 1e-5 absolute for tiny-to-small models; the half
# formats have 11 (fp16) and 8 (bf16) significant bits, and runtimes may accumulate them in fp32.
DEFAULT_TOLERANCES = {
    "float64": (1e-10, 1e-8),
    "float32": (1e-5, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (6e-2, 6e-2),
}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"atol {self.atol:g}, rtol {self.rtol:g}"


def default_tolerance(*dtypes: object, atol: Optional[float] = None, rtol: Optional[float] = None) -> Tolerance:
    """The loosest default among ``dtypes`` (the coarser model sets the bar); explicit values win."""
    known = [DEFAULT_TOLERANCES.get(np.dtype(d).name, DEFAULT_TOLERANCES["float32"]) for d in dtypes]
    base_atol = max(a for a, _ in known) if known else DEFAULT_TOLERANCES["float32"][0]
    base_rtol = max(r for _, r in known) if known else DEFAULT_TOLERANCES["float32"][1]
    return Tolerance(base_atol if atol is None else atol, base_rtol if rtol is None else rtol)


@dataclass(frozen=True)
class ErrorStats:
    """How far ``actual`` is from ``expected`` over the compared elements."""

    max_abs: float
    max_rel: float
    worst_index: Optional[tuple]  # index of the element furthest outside the tolerance
    failing: int  # elements outside the tolerance (NaN counts as failing)
    compared: int

    @property
    def passed(self) -> bool:
        return self.failing == 0

    def to_dict(self) -> dict:
        return {
            "max_abs": json_number(self.max_abs),
            "max_rel": json_number(self.max_rel),
            "failing": self.failing,
            "compared": self.compared,
            "worst_index": list(self.worst_index) if self.worst_index is not None else None,
        }


def json_number(value: float) -> object:
    """``value``, or "inf"/"nan" as text: strict JSON has no non-finite numbers."""
    return value if np.isfinite(value) else str(value)


def error_stats(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, where: Optional[np.ndarray] = None) -> ErrorStats:
    """Compare same-shaped arrays in float64, only where ``where`` (broadcastable) is True."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    select = np.ones(expected.shape, dtype=bool) if where is None else np.broadcast_to(where, expected.shape)
    diff = np.abs(actual - expected)
    diff = np.where(np.isnan(diff), np.inf, diff)  # a NaN on either side is a failure, never a pass
    excess = np.where(select, diff - (tol.atol + tol.rtol * np.abs(expected)), -np.inf)
    compared = int(select.sum())
    if compared == 0:
        return ErrorStats(0.0, 0.0, None, 0, 0)
    masked_diff = np.where(select, diff, 0.0)
    rel = masked_diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    failing = int((excess > 0).sum())
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), excess.shape))
    return ErrorStats(
        max_abs=float(masked_diff.max()),
        max_rel=float(np.where(select & (masked_diff > 0), rel, 0.0).max()),
        worst_index=worst if failing else None,
        failing=failing,
        compared=compared,
    )


def max_abs_error(expected: np.ndarray, actual: np.ndarray, where: Optional[np.ndarray] = None) -> float:
    """The largest absolute difference where ``where`` is True (inf if shapes differ or NaN appears)."""
    if np.shape(expected) != np.shape(actual):
        return float("inf")
    diff = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    if where is not None:
        diff = np.where(np.broadcast_to(where, diff.shape), diff, 0.0)
    return float(diff.max()) if diff.size else 0.0


def select_compared(actual: np.ndarray, expected_shape: tuple, expect: str) -> Optional[np.ndarray]:
    """The part of DST's output that must equal SRC's, or None if the shapes do not allow it."""
    if expect == "forward-half":
        width = expected_shape[-1]
        if actual.shape[:-1] != tuple(expected_shape[:-1]) or actual.shape[-1] != 2 * width:
            return None
        return actual[..., :width]
    return actual if tuple(actual.shape) == tuple(expected_shape) else None


def real_step_mask(case: InputCase, model: SequenceModel) -> Optional[np.ndarray]:
    """Broadcastable mask of the compared output elements: real steps only for sequence output."""
    if model.readout != "sequence":
        return None
    return case.real_steps()[..., None]
