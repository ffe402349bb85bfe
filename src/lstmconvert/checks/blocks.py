"""Where did each of DST's gate blocks come from in SRC? Rearrangement bugs named from the weights alone.

Every LSTM weight and bias is four gate blocks (i, f, g, o). A hand port or a buggy writer moves whole
blocks around: gates in another order, a matrix transposed, b_ih and b_hh exchanged, a direction
copied from the wrong layer. For each of DST's blocks this module looks for the SRC block it equals
(the same block first, then other gates, the other bias, transposed, other layers and directions),
and when every block is found, names the rearrangement: "f and o blocks swapped", "gates in order
i, o, f, g", "b_ih and b_hh swapped", "w_hh transposed", "DST's layer 1 reverse is SRC's layer 0
reverse". ``diagnose`` then replays the named rearrangement to confirm it explains DST's output.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..model import LSTMDirection, SequenceModel

GATES = "ifgo"
MATRICES = ("w_ih", "w_hh")


def explain_direction(src: SequenceModel, k: int, d: int, dst_dir: LSTMDirection) -> Optional[str]:
    """What was done to SRC's direction (k, d) to get ``dst_dir``, or None if blocks cannot explain it."""
    src_dir = src.layers[k].directions[d]
    single = _single_bias(src_dir) or _single_bias(dst_dir)
    names = MATRICES + (("bias",) if single else ("b_ih", "b_hh"))
    origins = {}
    for name in names:
        array = _array(dst_dir, name, single)
        if array is None:
            if _array(src_dir, name, single) is not None and np.any(_array(src_dir, name, single)):
                return None  # a dropped array is not a rearrangement (the bug catalogue covers it)
            continue
        origin = _origin(src, k, d, name, array, single)
        if origin is None:
            return None
        origins[name] = origin
    changed = {n: o for n, o in origins.items() if o != ("same",)}
    if not changed:
        return None
    return _describe(src, changed, set(origins))


def _single_bias(direction: LSTMDirection) -> bool:
    return direction.b_hh is None or not np.any(direction.b_hh)


def _array(direction: LSTMDirection, name: str, single: bool):
    if name == "bias":
        return direction.bias_sum()
    array = getattr(direction, name)
    if array is None and name in ("b_ih", "b_hh") and not single:
        return np.zeros(direction.w_hh.shape[0], direction.w_hh.dtype)
    return array


def _origin(src: SequenceModel, k: int, d: int, name: str, array: np.ndarray, single: bool):
    """("same",), ("perm", name, perm), ("transposed", name), ("slot", k, d) or None."""
    here = src.layers[k].directions[d]
    whole = _array(here, name, single)
    if whole is not None and _equal(whole, array):
        return ("same",)
    if name in MATRICES and whole is not None and whole.size == array.size:
        if _equal(np.ascontiguousarray(whole.T).reshape(array.shape), array):
            return ("transposed", name)
        blocks = _split(whole)
        if blocks and blocks[0].shape[0] == blocks[0].shape[1] and _equal(np.concatenate([b.T for b in blocks]), array):
            return ("blocks transposed", name)
    # The same array, or its sibling (the other bias / matrix), with gate blocks reordered.
    siblings = {"b_ih": "b_hh", "b_hh": "b_ih", "w_ih": "w_hh", "w_hh": "w_ih"}
    for source_name in (name, siblings.get(name)):
        source = _array(here, source_name, single) if source_name else None
        perm = _block_permutation(source, array)
        if perm is not None:
            return ("perm", source_name, perm)
    for k2, layer in enumerate(src.layers):  # a whole direction taken from elsewhere
        for d2, other in enumerate(layer.directions):
            if (k2, d2) != (k, d):
                source = _array(other, name, single)
                if source is not None and _equal(source, array):
                    return ("slot", k2, d2)
    return None


def _split(array: Optional[np.ndarray]):
    if array is None or array.ndim == 0 or array.shape[0] % 4:
        return None
    return np.split(array, 4, axis=0)


def _block_permutation(source: Optional[np.ndarray], array: np.ndarray) -> Optional[tuple]:
    """``perm`` with block j of ``array`` equal to block perm[j] of ``source`` (each used once), if any."""
    src_blocks, dst_blocks = _split(source), _split(array)
    if src_blocks is None or dst_blocks is None or source.shape != array.shape:
        return None
    perm, used = [], set()
    for j, block in enumerate(dst_blocks):
        candidates = [j] + [g for g in range(4) if g != j]  # the same gate first: ambiguous blocks stay put
        found = next((g for g in candidates if g not in used and _equal(src_blocks[g], block)), None)
        if found is None:
            return None
        perm.append(found)
        used.add(found)
    return tuple(perm)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype:
        return bool(np.array_equal(a, b))
    tol = max(np.finfo(np.float16).eps if x.dtype.itemsize <= 2 else 1e-6 for x in (a, b))
    x, y = a.astype(np.float64), b.astype(np.float64)
    return bool(np.allclose(x, y, rtol=tol, atol=tol * max(1e-6, float(np.max(np.abs(y), initial=0.0)))))


def permutation_text(perm: tuple) -> str:
    """(0, 3, 2, 1) -> "f and o blocks swapped"; longer cycles -> "gates in order i, o, f, g"."""
    moved = [j for j in range(4) if perm[j] != j]
    if len(moved) == 2:
        a, b = moved
        return f"{GATES[a]} and {GATES[b]} blocks swapped"
    return "gates in order " + ", ".join(GATES[p] for p in perm)


def _describe(src: SequenceModel, changed: dict, present: set) -> str:
    kinds = set(changed.values())
    if len(kinds) == 1 and next(iter(kinds))[0] == "slot" and set(changed) == present:
        _, k2, d2 = next(iter(kinds))
        from .suspects import slot_name

        return f"a whole direction taken from elsewhere: these are SRC's {slot_name(src, k2, d2)} weights"
    parts = []
    perms = {}
    for name, origin in changed.items():
        if origin[0] == "perm" and origin[1] == name:
            perms.setdefault(origin[2], []).append(name)
    for perm, names in perms.items():
        where = "" if set(names) == present else " in " + ", ".join(names)
        parts.append(permutation_text(perm) + where)
    done = {n for names in perms.values() for n in names}
    swapped = [n for n, o in changed.items() if o[0] == "perm" and o[1] != n]
    for name in swapped:
        perm = changed[name][2]
        if name in done:
            continue
        pair = sorted({name, changed[name][1]})
        partner = changed.get(changed[name][1])
        if partner and partner[0] == "perm" and partner[1] == name and partner[2] == perm:
            done.update(pair)
            order = "" if perm == (0, 1, 2, 3) else f", with {permutation_text(perm)}"
            parts.append(f"{pair[0]} and {pair[1]} swapped{order}")
        else:
            done.add(name)
            order = "" if perm == (0, 1, 2, 3) else f" ({permutation_text(perm)})"
            parts.append(f"{name} holds SRC's {changed[name][1]}{order}")
    for name, origin in changed.items():
        if name in done:
            continue
        if origin[0] == "transposed":
            parts.append(f"{name} transposed (its bytes read in the other axis order)")
        elif origin[0] == "blocks transposed":
            parts.append(f"{name}'s gate blocks each transposed")
        elif origin[0] == "slot":
            from .suspects import slot_name

            parts.append(f"{name} taken from SRC's {slot_name(src, origin[1], origin[2])}")
    return "; ".join(parts)
