"""What a tensor on the model's data path means, as the reader walks the graph.

Each data tensor gets a ``Flow``: its axes (each a tuple of *atoms*), what kind of data it holds
and which part of the model produced it. Atoms are the two input axes (``i0``, ``i1``; the first
LSTM tells which is time and which is batch), ``D`` (LSTM directions), ``F`` (features) and ``1``
(a unit axis). An axis with several atoms is a row-major merge, e.g. ``(D, F)`` is the directions
concatenated feature-wise, forward first.

For LSTM outputs ``entries`` say which (layer, direction, output) each position of the ``D`` axis
holds, or, once ``D`` is gone, each ``F`` block in order.

The records here (``Prefix``, ``LayerRecord``, ``DenseRecord``) are what the walk found, kept
immutable: the neutral model is assembled from them only after the walk (``model_builder``). The
moves of layout ops on a Flow are in ``layout``; ``group_reshape`` (the Reshape rule) stays here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .symbolic import Dim

INPUT_ATOMS = ("i0", "i1")


@dataclass(frozen=True)
class Lengths:
    """Where an LSTM's ``sequence_lens`` come from: a graph input, or counted from the padding."""

    source: str  # "input" or "padding"
    input_name: str
    time_atom: Optional[str] = None  # padding: the input axis counted over
    pad_value: Optional[float] = None


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """One LSTM layer as the walk found it: one node, or a forward and a backward node joined.

    Only what the node itself says. How the directions are merged and whether the output comes
    reversed in time is decided later, by the layer's consumer (see ``lstm_stack.Settlement``), and
    the model builder combines both into a neutral ``LSTMLayer``. Records compare by identity.
    """

    node_name: str
    directions: tuple  # LSTMDirection per direction, forward first
    reverse: bool  # one direction running backward in time (direction="reverse", or over a reversed input)
    clip: Optional[float]
    input_forget: bool
    layout: int
    input_reversed: bool = False  # the node runs forward over the time-reversed input

    @property
    def bidirectional(self) -> bool:
        return len(self.directions) == 2

    @property
    def hidden_size(self) -> int:
        return self.directions[0].hidden_size

    @property
    def input_size(self) -> int:
        return self.directions[0].input_size

    @property
    def dtype(self) -> np.dtype:
        return self.directions[0].w_ih.dtype

    def output_size(self, merge: str) -> int:
        """Width of the layer's output once its directions are merged with ``merge``."""
        width = self.directions[0].output_size
        return 2 * width if self.bidirectional and merge == "concat" else width


@dataclass(frozen=True, eq=False)
class DenseRecord:
    """One dense layer of the head as the walk found it: MatMul/Gemm, then maybe an Add and an activation."""

    weight: np.ndarray  # (out, in)
    bias: Optional[np.ndarray] = None
    activation: str = "linear"


@dataclass(frozen=True, eq=False)
class Prefix:
    """The model up to a tensor: input, embedding, LSTM layers, how lengths are found."""

    input_name: str
    input_kind: str  # "tokens" or "features"
    time_atom: Optional[str] = None
    embedding_table: Optional[np.ndarray] = None  # (vocab, dim)
    embedding_node: Optional[str] = None
    layers: tuple = ()
    lengths: Optional[Lengths] = None

    def key(self) -> tuple:
        return (self.input_name, self.embedding_node, tuple(r.node_name for r in self.layers))

    @property
    def batch_atom(self) -> Optional[str]:
        if self.time_atom is None:
            return None
        return INPUT_ATOMS[1] if self.time_atom == INPUT_ATOMS[0] else INPUT_ATOMS[0]


@dataclass(frozen=True)
class Entry:
    """One LSTM output slice: ``what`` is "seq" (every step, original order), "rev" (every step,
    reversed in time), "Y_h" (final state), "Y@first"/"Y@last" (one step of Y)."""

    layer: int
    direction: int
    what: str


@dataclass(frozen=True, eq=False)
class Flow:
    """What one tensor on the data path holds; layout ops derive a new Flow with ``evolve``."""

    kind: str  # "ids", "features" or "lstm"
    axes: tuple
    width: Optional[int]  # size of the F atom (per direction block for "lstm")
    dtype: np.dtype
    prefix: Prefix
    entries: tuple = ()
    merge: Optional[str] = None  # "sum"/"ave"/"mul" once the D axis was reduced that way
    reversed_atom: Optional[str] = None  # features: the input atom along which time runs backwards
    readout: Optional[str] = None  # set once the LSTM stack's output is settled
    head: tuple = field(default=())  # DenseRecords after the LSTM stack

    def evolve(self, **changes) -> "Flow":
        return replace(self, **changes)

    @property
    def rank(self) -> int:
        return len(self.axes)

    def axis_of(self, atom: str) -> Optional[int]:
        for k, axis in enumerate(self.axes):
            if atom in axis:
                return k
        return None

    def atom_size(self, atom: str) -> Optional[int]:
        if atom == "D":
            return len(self.entries)
        if atom == "F":
            if self.width is not None and self.kind == "lstm" and not self.merge and self.axis_of("D") is None:
                return self.width * len(self.entries)  # the directions sit side by side in F
            return self.width
        if atom == "1":
            return 1
        return None

    def dims(self) -> Optional[list]:
        """Symbolic size of every axis (None if the feature width is not known yet)."""
        out = []
        for axis in self.axes:
            dim = Dim(1)
            for atom in axis:
                size = self.atom_size(atom)
                if size is None and atom not in INPUT_ATOMS:
                    return None
                dim = dim * (Dim(1, (atom,)) if size is None else Dim(size))
            out.append(dim)
        return out


def group_reshape(flow: Flow, target: list) -> Optional[tuple]:
    """The axes after reshaping ``flow`` to ``target`` (Dims; 0 = copy that axis, -1 = infer), or None.

    A row-major reshape keeps the order of the atoms and only regroups them, so each target entry
    must take a run of consecutive atoms whose sizes multiply to it. Unit atoms (size 1, such as a
    single-direction ``D``) carry no data and are dropped. A known integer may stand for one
    symbolic atom: exporters sometimes bake the example's batch or time size into a shape.
    """
    atoms = [(atom, flow.atom_size(atom)) for axis in flow.axes for atom in axis]
    dims = []
    for k, dim in enumerate(target):
        if dim.known and dim.coef == 0:  # copy input axis k
            if k >= len(flow.axes):
                return None
            dims.append(flow.dims()[k])
        else:
            dims.append(dim)
    infer = [k for k, d in enumerate(dims) if d.known and d.coef == -1]
    if len(infer) > 1 or any(d.coef <= 0 and not (d.known and d.coef == -1) for d in dims):
        return None
    if not infer:
        groups, rest = _take(atoms, dims)
        if groups is None or any(size != 1 for _, size in rest):
            return None
        return tuple(groups)
    split = infer[0]
    left, rest = _take(atoms, dims[:split])
    if left is None:
        return None
    right, middle = _take(list(reversed(rest)), list(reversed(dims[split + 1:])))
    if right is None:
        return None
    inferred = tuple(a for a, size in middle[::-1] if size != 1) or ("1",)
    return tuple(left) + (inferred,) + tuple(g[::-1] for g in reversed(right))


def _take(atoms: list, dims: list) -> tuple:
    """Consume ``atoms`` from the front into one group per dim; (groups, leftover) or (None, None)."""
    groups, pos = [], 0
    for dim in dims:
        if dim.known and dim.coef == 1:
            if pos < len(atoms) and atoms[pos][1] == 1:
                groups.append((atoms[pos][0],))
                pos += 1
            else:
                groups.append(("1",))
            continue
        group, coef, symbols = [], 1, []
        while True:
            while pos < len(atoms) and atoms[pos][1] == 1:
                pos += 1  # unit atoms carry nothing
            if group and coef == dim.coef and sorted(symbols) == sorted(dim.atoms):
                break
            if pos >= len(atoms):
                return None, None
            atom, size = atoms[pos]
            if size is None:
                if symbols.count(atom) < dim.atoms.count(atom):
                    symbols.append(atom)
                elif dim.known and not group:
                    group.append(atom)  # a baked-in size standing for this symbolic axis
                    pos += 1
                    break
                else:
                    return None, None
            else:
                coef *= size
                if dim.coef % coef:
                    return None, None
            group.append(atom)
            pos += 1
        groups.append(tuple(group))
    return groups, atoms[pos:]
