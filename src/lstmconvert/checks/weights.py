"""Weight-level comparison of two neutral models: bit-exactness and "which bug turns A into B".

Biases follow the neutral model's convention: ``None`` means zero, and formats with a single bias
(Keras) carry ``b_ih + b_hh`` in ``b_ih``. Such a format is compared by that documented folding.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..model import LSTMDirection, SequenceModel
from .blocks import explain_direction
from .suspects import direction_bugs, slot_name

BIASES = ("b_ih", "b_hh")


def bits_equal(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Same dtype, shape and bytes (so -0.0 != 0.0 and NaN payloads count)."""
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _zero_or_none(a: Optional[np.ndarray]) -> bool:
    return a is None or not np.any(a)


def _bias_equal(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Bit-exact, where an absent bias equals an all-zero one."""
    if _zero_or_none(a) and _zero_or_none(b):
        return True
    return bits_equal(a, b)


def exactness_problems(source: SequenceModel, copy: SequenceModel, single_bias: bool = False) -> list:
    """Why ``copy``'s weights are not bit-for-bit ``source``'s; empty if they are.

    ``single_bias``: ``copy`` came from a single-bias format, so its ``b_ih`` must equal
    ``source``'s ``b_ih + b_hh`` (computed in the weights' dtype) and its ``b_hh`` be absent or zero.
    """
    problems = structure_problems(source, copy)
    if len(source.layers) != len(copy.layers):
        return problems
    if len(source.head) != len(copy.head):
        problems.append(f"{len(copy.head)} head layers instead of {len(source.head)}")
    if (source.embedding is None) != (copy.embedding is None):
        problems.append("embedding lost" if copy.embedding is None else "embedding appeared")
    elif source.embedding is not None and not bits_equal(source.embedding.weight, copy.embedding.weight):
        problems.append(f"embedding.weight: {_how_different(source.embedding.weight, copy.embedding.weight)}")
    for k, (a, b) in enumerate(zip(source.layers, copy.layers)):
        if len(a.directions) != len(b.directions):
            problems.append(f"layer {k}: {len(b.directions)} directions instead of {len(a.directions)}")
            continue
        for d, (da, db) in enumerate(zip(a.directions, b.directions)):
            where = f"layers.{k}.{'reverse' if d else 'forward'}"
            problems += _direction_problems(da, db, where, single_bias)
    for j, (a, b) in enumerate(zip(source.head, copy.head)):
        if not bits_equal(a.weight, b.weight):
            problems.append(f"head.{j}.weight: {_how_different(a.weight, b.weight)}")
        if not _bias_equal(a.bias, b.bias):
            problems.append(f"head.{j}.bias: {_how_different(a.bias, b.bias)}")
    return problems


def structure_problems(source: SequenceModel, copy: SequenceModel) -> list:
    """Differences in what the model does besides its weights (readout, masking, merge...)."""
    problems = []
    for attr in ("input_kind", "readout", "masked"):
        if getattr(source, attr) != getattr(copy, attr):
            problems.append(f"{attr} {getattr(copy, attr)!r} instead of {getattr(source, attr)!r}")
    if source.masked and copy.masked and source.input_kind == "features" and source.mask_value != copy.mask_value:
        problems.append(f"mask_value {copy.mask_value!r} instead of {source.mask_value!r}")
    if len(source.layers) != len(copy.layers):
        problems.append(f"{len(copy.layers)} LSTM layers instead of {len(source.layers)}")
        return problems
    for k, (a, b) in enumerate(zip(source.layers, copy.layers)):
        for attr in ("merge", "reverse", "reversed_output", "clip", "input_forget"):
            if (a.bidirectional or attr != "merge") and getattr(a, attr) != getattr(b, attr):
                problems.append(f"layer {k}: {attr} {getattr(b, attr)!r} instead of {getattr(a, attr)!r}")
    for j, (a, b) in enumerate(zip(source.head, copy.head)):
        if a.activation != b.activation:
            problems.append(f"head.{j}: activation {b.activation!r} instead of {a.activation!r}")
    return problems


def _direction_problems(a: LSTMDirection, b: LSTMDirection, where: str, single_bias: bool) -> list:
    problems = []
    for name in ("w_ih", "w_hh", "w_hr", "peephole"):
        x, y = getattr(a, name), getattr(b, name)
        if not bits_equal(x, y):
            problems.append(f"{where}.{name}: {_how_different(x, y)}")
    if single_bias:
        if not _zero_or_none(b.b_hh):
            problems.append(f"{where}.b_hh: a single-bias format came back with a second bias")
        if not _bias_equal(a.bias_sum(), b.b_ih):
            problems.append(f"{where}.b_ih: not the folded b_ih + b_hh ({_how_different(a.bias_sum(), b.b_ih)})")
    else:
        for name in BIASES:
            x, y = getattr(a, name), getattr(b, name)
            if not _bias_equal(x, y):
                problems.append(f"{where}.{name}: {_how_different(x, y)}")
    if tuple(a.activations) != tuple(b.activations):
        problems.append(f"{where}: activations {'/'.join(map(str, b.activations))} instead of "
                        f"{'/'.join(map(str, a.activations))}")
    return problems


def _how_different(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> str:
    if a is None or b is None:
        return "missing" if b is None else "appeared"
    if a.shape != b.shape:
        return f"shape {b.shape} instead of {a.shape}"
    if a.dtype != b.dtype:
        return f"dtype {b.dtype} instead of {a.dtype}"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"{int(np.count_nonzero(diff))} of {a.size} values differ (max abs {float(np.nanmax(diff)):.3g})"


def identify_weight_changes(source: SequenceModel, target: SequenceModel) -> list:
    """Name what turns each of ``source``'s directions into ``target``'s: ``(finding, (k, d), direction)``.

    ``direction`` is ``target``'s direction aligned to ``source``'s shapes when the finding names a
    rearrangement of blocks or a catalogued bug (so ``diagnose`` can replay it), None when the finding
    only says the weights differ. Only directions present in both are looked at (a new backward
    direction has no source). Input weights that a conversion widened with zero columns, or doubled for
    merge "ave", are compared on the columns and scale the conversion left them.
    """
    findings = []
    for k, (a, b) in enumerate(zip(source.layers, target.layers)):
        for d in range(min(len(a.directions), len(b.directions))):
            da, db = a.directions[d], _aligned(a.directions[d], b.directions[d])
            if db is None or _same_function(da, db):
                continue
            name = slot_name(source, k, d)
            rearranged = explain_direction(source, k, d, db) if tuple(da.activations) == tuple(db.activations) else None
            matches = [bug for bug in direction_bugs(da, all_orders=True) if _same_function(bug.apply(da), db)]
            if matches and matches[0].hint:  # a bug with a known story (an exporter's gate order...) says more
                findings.append((f"{name}: DST's weights are SRC's with {matches[0].describe()}", (k, d), db))
            elif rearranged:
                findings.append((f"{name}: DST's weights are SRC's with {rearranged}", (k, d), db))
            elif matches:
                findings.append((f"{name}: DST's weights are SRC's with {matches[0].describe()}", (k, d), db))
            else:
                findings.append((f"{name}: DST's weights differ from SRC's ({_difference_summary(da, db)})", (k, d), None))
    return findings


def _aligned(src: LSTMDirection, dst: LSTMDirection) -> Optional[LSTMDirection]:
    """``dst`` with a conversion's widening of w_ih undone, or None if the shapes cannot line up."""
    if dst.w_hh.shape != src.w_hh.shape:
        return None
    w_ih = dst.w_ih
    if w_ih.shape[1] == 2 * src.w_ih.shape[1]:  # merge "concat": zero columns for the backward half
        w_ih = w_ih[:, : src.w_ih.shape[1]]
    if w_ih.shape != src.w_ih.shape:
        return None
    if not np.array_equal(w_ih, src.w_ih) and np.array_equal(w_ih, src.w_ih * src.w_ih.dtype.type(2)):
        w_ih = src.w_ih  # merge "ave": doubled to undo the halving
    out = LSTMDirection(**{**dst.arrays(), "w_ih": w_ih}, activations=dst.activations)
    return out


def _same_function(a: LSTMDirection, b: LSTMDirection) -> bool:
    """Same weights up to how the two biases are split."""
    sum_a, sum_b = a.bias_sum(), b.bias_sum()
    same_bias = (_zero_or_none(sum_a) and _zero_or_none(sum_b)) or (
        sum_a is not None and sum_b is not None and sum_a.shape == sum_b.shape
        and np.allclose(sum_a.astype(np.float64), sum_b.astype(np.float64), rtol=1e-6, atol=0)
    )
    arrays_a, arrays_b = a.arrays(), b.arrays()
    others = all(
        (arrays_a.get(n) is None) == (arrays_b.get(n) is None)
        and (arrays_a.get(n) is None or np.array_equal(arrays_a[n], arrays_b[n]))
        for n in ("w_ih", "w_hh", "w_hr", "peephole")
    )
    return same_bias and others and tuple(a.activations) == tuple(b.activations)


def _difference_summary(a: LSTMDirection, b: LSTMDirection) -> str:
    parts = []
    for name in ("w_ih", "w_hh", "w_hr", "peephole"):
        x, y = getattr(a, name), getattr(b, name)
        if not (x is None and y is None) and not (x is not None and y is not None and np.array_equal(x, y)):
            parts.append(f"{name} {_how_different(x, y)}")
    if not _same_function(LSTMDirection(a.w_ih, a.w_hh, a.b_ih, a.b_hh), LSTMDirection(a.w_ih, a.w_hh, b.b_ih, b.b_hh)):
        parts.append(f"bias {_how_different(a.bias_sum(), b.bias_sum())}")
    if tuple(a.activations) != tuple(b.activations):
        parts.append("activations " + "/".join(map(str, b.activations)))
    return "; ".join(parts) or "bias split"
