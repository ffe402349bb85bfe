"""The state of one in-place edit of an ONNX graph: new names, new nodes, changed weights, roles.

Nothing here touches the graph until ``apply``: the LSTMs and the walk over their consumers only
record what changes (weights per node input slot, nodes to insert after a node, inputs to rename),
so an edit that is refused half-way leaves the loaded model as it was, and ``describe_edit`` can
report a plan without writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ...options import EditRequest
from ...widening import Initialiser
from .graph_index import GraphIndex, describe
from .node_arguments import fresh_name


@dataclass
class Stacked:
    """A weight made of ``rows`` stacked on a new first axis (an LSTM's directions), kept as the pieces.

    The forward direction stays the source's own array and a copied backward direction is that same
    array again, so a large LSTM is written without building the stacked tensor in memory.
    """

    rows: list

    @property
    def shape(self) -> tuple:
        return (len(self.rows),) + tuple(self.rows[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return self.rows[0].dtype

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.rows)

    def array(self) -> np.ndarray:
        return np.stack(self.rows)


def node_key(node: onnx.NodeProto) -> tuple:
    """A node's identity in this graph: its outputs (unique by SSA; names may be empty or repeated)."""
    return tuple(node.output)


@dataclass
class EditContext:
    model: onnx.ModelProto
    index: GraphIndex
    request: EditRequest
    init: Initialiser
    weights: dict = field(default_factory=dict)  # (node key, input slot) -> new array or Stacked
    inserted: dict = field(default_factory=dict)  # node key -> nodes to place right after it
    renamed_outputs: dict = field(default_factory=dict)  # (node key, output slot) -> new value name
    renamed_inputs: dict = field(default_factory=dict)  # (node key, input slot) -> new value name
    new_initializers: list = field(default_factory=list)
    roles: dict = field(default_factory=dict)  # node key -> (role, change)
    widened: list = field(default_factory=list)  # LSTM node names
    consumers: list = field(default_factory=list)  # consumer node names
    notes: list = field(default_factory=list)
    lossy: list = field(default_factory=list)  # why the function is not preserved (preserve=False)
    wide: dict = field(default_factory=dict)  # value name -> Wide, filled by the consumer walk
    refused_at: Optional[tuple] = None  # the node the walk was at when it refused
    _used: Optional[set] = None

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    @property
    def opset(self) -> int:
        return self.index.opset

    # -- names ---------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A value/node/initializer name the graph does not use yet."""
        if self._used is None:
            used = {t.name for t in self.graph.initializer} | {i.name for i in self.graph.input}
            for node in self.graph.node:
                used.update(node.input)
                used.update(node.output)
                used.add(node.name)
            self._used = used
        return fresh_name(hint, self._used)

    # -- recording -----------------------------------------------------------------------------------
    def value(self, node: onnx.NodeProto, slot: int) -> Optional[np.ndarray]:
        """The current value of a node's constant input: an edit already recorded, else the folded constant."""
        if (node_key(node), slot) in self.weights:
            value = self.weights[(node_key(node), slot)]
            return value.array() if isinstance(value, Stacked) else value
        if slot >= len(node.input) or not node.input[slot]:
            return None
        return self.index.const(node.input[slot])

    def set_weight(self, node: onnx.NodeProto, slot: int, array) -> None:
        """Record a node input's new value: an array, or a ``Stacked`` of arrays."""
        self.weights[(node_key(node), slot)] = array

    def constant(self, hint: str, array: np.ndarray) -> str:
        """A new small initializer (shapes, axes) for inserted nodes."""
        name = self.fresh(hint)
        self.new_initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def insert_after(self, anchor: onnx.NodeProto, op: str, inputs: list, output: str, hint: str, **attrs) -> str:
        node = onnx.helper.make_node(op, inputs, [output], name=self.fresh(hint), **attrs)
        self.inserted.setdefault(node_key(anchor), []).append(node)
        return output

    def mark(self, node: onnx.NodeProto, role: str, change: str = "") -> None:
        old = self.roles.get(node_key(node))
        if old is not None and old[0] == "lstm" and role == "consumer":  # a stacked LSTM is both
            self.roles[node_key(node)] = ("lstm", f"{old[1]}; {change}" if old[1] else change)
            return
        if old is not None and old[0] in ("lstm", "consumer") and role == "through":
            return
        self.roles[node_key(node)] = (role, change)

    def where(self, node: onnx.NodeProto) -> str:
        return describe(node)
