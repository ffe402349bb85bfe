"""The flow algebra: what layout ops do to a Flow's axes and LSTM entries.

Exporters wrap LSTM nodes in Transposes, Squeezes, Reshapes, Slices, Gathers and Concats that move
axes around, drop the unit direction axis, pick a direction or one time step, or put directions
side by side. Each function here takes a Flow and the already-evaluated arguments of one such op
and returns the Flow after it, or refuses with the op (``where``) and the axes it met. Nothing here
reads the graph: the op handlers fetch constants and call these, so the rules can be read (and
reasoned about) apart from ONNX's argument conventions.
"""

from __future__ import annotations

from typing import Optional

from ...errors import OutsideNeutralShapeError, UnsupportedError
from .flow import INPUT_ATOMS, Entry, Flow, group_reshape
from .node_arguments import clamp_slice

BIG = 2 ** 30  # Slice ends at or beyond this mean "to the end"


# -- naming axes in messages ----------------------------------------------------------------------
def axis_text(flow: Flow, atoms: tuple) -> str:
    """An axis as a user reads it: "time", "batch", "directions*features"..."""
    names = {"D": "directions", "F": "features", "1": "1"}
    time = flow.prefix.time_atom
    parts = []
    for atom in atoms:
        if atom in INPUT_ATOMS:
            parts.append("time" if atom == time else "batch" if time else f"input axis {atom[1]}")
        else:
            parts.append(names.get(atom, atom))
    return "*".join(parts)


def axes_text(flow: Flow, axes: tuple) -> str:
    return "(" + ", ".join(axis_text(flow, axis) for axis in axes) + ")"


def is_unit(flow: Flow, axis: tuple) -> bool:
    """Has ``axis`` size 1 (unit atoms, or the direction axis of a one-direction LSTM)?"""
    return all(a == "1" or (a == "D" and len(flow.entries) == 1) for a in axis)


# -- moving, adding and removing axes -------------------------------------------------------------
def transpose(flow: Flow, perm: list, where: str) -> Flow:
    if sorted(perm) != list(range(flow.rank)):
        raise UnsupportedError(f"{where}: perm {perm} does not fit rank {flow.rank}")
    return flow.evolve(axes=tuple(flow.axes[p] for p in perm))


def squeeze(flow: Flow, axes: Optional[list], where: str) -> Flow:
    """Remove ``axes`` (all unit axes if None); each must have size 1."""
    if axes is None:
        axes = [k for k, axis in enumerate(flow.axes) if is_unit(flow, axis)]
    axes = sorted({a % flow.rank for a in axes})
    for a in axes:
        if not is_unit(flow, flow.axes[a]):
            raise UnsupportedError(f"{where}: squeezes axis {a} ({axis_text(flow, flow.axes[a])}), which is not of size 1")
    return flow.evolve(axes=tuple(axis for k, axis in enumerate(flow.axes) if k not in axes))


def unsqueeze(flow: Flow, axes: list) -> Flow:
    rank = flow.rank + len(axes)
    result = list(flow.axes)
    for a in sorted(a % rank for a in axes):
        result.insert(a, ("1",))
    return flow.evolve(axes=tuple(result))


def reshape(flow: Flow, target: list, where: str) -> Flow:
    """Reshape to ``target`` (Dims): only regroupings that keep batch, time and features apart."""
    axes = group_reshape(flow, target) if flow.dims() is not None else None
    if axes is None:
        raise UnsupportedError(
            f"{where}: reshaping {axes_text(flow, flow.axes)} to [{', '.join(map(str, target))}] "
            "does not keep batch, time and features apart"
        )
    return normalise(flow.evolve(axes=axes), where)


def flatten(flow: Flow, axis: int, where: str) -> Flow:
    """ONNX Flatten: the axes before ``axis`` merged into one, the rest into another."""
    axis = axis % max(flow.rank, 1)
    if flow.dims() is None:
        raise UnsupportedError(f"{where}: feature width unknown")
    left = tuple(a for axis_atoms in flow.axes[:axis] for a in axis_atoms) or ("1",)
    right = tuple(a for axis_atoms in flow.axes[axis:] for a in axis_atoms) or ("1",)
    return normalise(flow.evolve(axes=(left, right)), where)


def normalise(flow: Flow, where: str) -> Flow:
    """Drop unit atoms inside merged axes; a (D, F) axis becomes F with the directions as blocks."""
    axes = []
    for axis in flow.axes:
        atoms = tuple(a for a in axis if a != "1" and not (a == "D" and len(flow.entries) == 1 and len(axis) > 1))
        if "D" in atoms and len(atoms) > 1:
            if atoms != ("D", "F"):
                raise UnsupportedError(f"{where}: mixes the LSTM directions into {axis_text(flow, atoms)}")
            atoms = ("F",)
        axes.append(atoms or ("1",))
    return flow.evolve(axes=tuple(axes))


# -- selecting directions and time steps ----------------------------------------------------------
def slice_axis(flow: Flow, axis: int, start: int, end: int, step: int, where: str) -> Flow:
    """One axis of a Slice: whole directions, the first or last time step, or time reversed."""
    atoms = flow.axes[axis]
    if atoms == ("D",):
        picks = list(range(len(flow.entries)))[slice(start, None if end >= BIG else end, step)]
        return select(flow, axis, picks, True, where)
    if step == 1 and start == 0 and end >= BIG:
        return flow  # the whole axis
    if atoms == ("F",) and flow.kind == "lstm" and flow.axis_of("D") is None and not flow.merge and step == 1:
        # Directions side by side in the features (PyTorch output[..., :H]): whole blocks only.
        width = flow.width
        low, high, _ = clamp_slice(start, end, step, width * len(flow.entries))
        if high > low and low % width == 0 and high % width == 0:
            return flow.evolve(entries=flow.entries[low // width: high // width])
    if len(atoms) == 1 and atoms[0] == flow.prefix.time_atom and flow.kind == "lstm":
        if step == 1 and start == -1 and end >= BIG:
            return pick_time(flow, axis, "last", True, where)
        if step == 1 and start == 0 and end == 1:
            return pick_time(flow, axis, "first", True, where)
        if step == -1 and start == -1 and end <= -BIG:
            return reverse_time(flow, where)
    raise UnsupportedError(f"{where}: slices {axis_text(flow, atoms)} [{start}:{end}:{step}], "
                           "which is not a whole direction, the first or the last time step")


def select(flow: Flow, axis: int, picks: list, keep_axis: bool, where: str) -> Flow:
    """Gather ``picks`` along ``axis``: LSTM directions, or the first/last time step."""
    atoms = flow.axes[axis]
    if atoms == ("D",):
        n = len(flow.entries)
        if any(not -n <= p < n for p in picks):
            raise UnsupportedError(f"{where}: direction index out of range")
        entries = tuple(flow.entries[p] for p in picks)
        axes = flow.axes if keep_axis else flow.axes[:axis] + flow.axes[axis + 1:]
        return flow.evolve(entries=entries, axes=axes)
    if len(atoms) == 1 and atoms[0] == flow.prefix.time_atom and flow.kind == "lstm" and len(picks) == 1:
        which = {-1: "last", 0: "first"}.get(picks[0])
        if which is not None:
            return pick_time(flow, axis, which, keep_axis, where)
    raise UnsupportedError(f"{where}: selects {picks} from {axis_text(flow, atoms)}, "
                           "which is not an LSTM direction or the first/last time step")


def pick_time(flow: Flow, axis: int, which: str, keep_axis: bool, where: str) -> Flow:
    """One time step ("first" or "last") of an LSTM's full output Y."""
    if any(e.what != "seq" for e in flow.entries):
        raise UnsupportedError(f"{where}: picks a time step of something that is not an LSTM's full output")
    entries = tuple(Entry(e.layer, e.direction, f"Y@{which}") for e in flow.entries)
    axes = list(flow.axes)
    if keep_axis:
        axes[axis] = ("1",)
    else:
        del axes[axis]
    return flow.evolve(entries=entries, axes=tuple(axes))


def reverse_time(flow: Flow, where: str) -> Flow:
    """An LSTM's full output read backwards in time ("rev" twice is "seq")."""
    flips = {"seq": "rev", "rev": "seq"}
    if any(e.what not in flips for e in flow.entries):
        raise UnsupportedError(f"{where}: reverses something that is not an LSTM's full output")
    return flow.evolve(entries=tuple(Entry(e.layer, e.direction, flips[e.what]) for e in flow.entries))


def reversal_atom(flow: Flow, time_axis: int, where: str) -> str:
    """The input atom a ReverseSequence along ``time_axis`` reverses (it must be a whole input axis)."""
    if flow.rank != 3 or len(flow.axes[time_axis]) != 1 or flow.axes[time_axis][0] not in INPUT_ATOMS:
        raise UnsupportedError(f"{where}: reverses {axes_text(flow, flow.axes)} along axis {time_axis}")
    return flow.axes[time_axis][0]


def reverse_sequence(flow: Flow, atom: str, where: str) -> Flow:
    """Full-length reversal along ``atom``: of an LSTM's output over time, or of its input sequence."""
    if flow.kind == "lstm":
        if atom != flow.prefix.time_atom:
            raise UnsupportedError(f"{where}: reverses an LSTM output along a non-time axis")
        return reverse_time(flow, where)
    if flow.kind != "features" or flow.head:
        raise UnsupportedError(f"{where}: reverses something other than a sequence of features")
    if flow.reversed_atom not in (None, atom):
        raise UnsupportedError(f"{where}: reverses a second axis")
    return flow.evolve(reversed_atom=None if flow.reversed_atom else atom)


# -- merging directions ---------------------------------------------------------------------------
def concat(flows: list, axis: int, where: str) -> Flow:
    """LSTM outputs concatenated along the direction axis, or feature-wise as direction blocks.

    The caller has checked that all are LSTM outputs of one model and passes the joint prefix as
    the first flow's.
    """
    first = flows[0]
    for f in flows[1:]:
        same = f.rank == first.rank and all(a == b for k, (a, b) in enumerate(zip(f.axes, first.axes)) if k != axis)
        if not same or f.axes[axis] != first.axes[axis] or f.merge or first.merge:
            raise UnsupportedError(f"{where}: concatenates LSTM outputs of different layouts")
    atoms = first.axes[axis]
    if atoms == ("D",) or (atoms == ("F",) and first.axis_of("D") is None and len({f.width for f in flows}) == 1):
        return first.evolve(entries=tuple(e for f in flows for e in f.entries))
    raise UnsupportedError(f"{where}: concatenates along {axis_text(first, atoms)}, not directions")


def reduce_directions(flow: Flow, axes: Optional[list], keepdims: bool, merge: str, where: str) -> Flow:
    """ReduceSum/ReduceMean over the direction axis of a two-direction LSTM output."""
    if flow.kind != "lstm" or axes is None or len(axes) != 1 or flow.axes[axes[0] % flow.rank] != ("D",):
        what = "all axes" if axes is None else " and ".join(axis_text(flow, flow.axes[a % flow.rank]) for a in axes)
        pooling = " (pooling over time: lstmconvert's models output every step or the final state)" \
            if axes is not None and any(flow.prefix.time_atom in flow.axes[a % flow.rank] for a in axes) else ""
        # A reduction over anything else is a pooling layer the model has no place for.
        raise OutsideNeutralShapeError(f"{where}: reduces {what}; only the LSTM direction axis can be "
                                       f"reduced{pooling}", layer=where)
    axis = axes[0] % flow.rank
    if len(flow.entries) != 2 or flow.merge:
        raise UnsupportedError(f"{where}: merges {len(flow.entries)} direction(s); expected 2")
    axes_out = list(flow.axes)
    if keepdims:
        axes_out[axis] = ("1",)
    else:
        del axes_out[axis]
    return flow.evolve(axes=tuple(axes_out), merge=merge)


def is_single_direction_pair(left: Flow, right: Flow) -> bool:
    """Two one-direction LSTM outputs of the same layout, not yet merged: an elementwise merge's inputs."""
    return (left.kind == "lstm" and right.kind == "lstm" and left.axes == right.axes and not left.merge
            and not right.merge and len(left.entries) == 1 and len(right.entries) == 1
            and left.axis_of("D") is None)
