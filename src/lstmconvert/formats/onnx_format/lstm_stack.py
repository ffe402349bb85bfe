"""The LSTM stack as the walk finds it: layer records, how each layer's output is settled, joins.

An LSTM node becomes a ``LayerRecord`` when the walk first reaches one of its outputs. What its
output means (every step or the final state, merged how, reversed or not) is known only where the
output meets a consumer that needs merged features (the next LSTM, a dense layer, the graph
output): ``settle`` decides it there and records it in ``StackFindings.settlements``, refusing a
layer that two consumers would settle differently. tf2onnx writes a bidirectional Keras layer as
two one-direction nodes; ``join_directions`` turns such a pair into one two-direction record.
Nothing here builds a neutral layer: ``model_builder`` does, from the records and settlements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import OutsideNeutralShapeError, UnsupportedError
from . import lstm_node
from .flow import Entry, Flow, LayerRecord, Prefix
from .layout import axes_text
from .lengths import match_lengths
from .node_arguments import describe

if TYPE_CHECKING:
    from .graph_walk import GraphWalk


@dataclass(frozen=True)
class Settlement:
    """How one LSTM layer's output is read: the merge of its directions and Keras's reversed output."""

    merge: str = "concat"
    reversed_output: bool = False


@dataclass
class StackFindings:
    """What the walk recorded about the LSTM stack (keyed by node or record identity)."""

    nodes: dict = field(default_factory=dict)  # id(LSTM node) -> (record, prefix, time atom, batch atom)
    settlements: dict = field(default_factory=dict)  # LayerRecord -> Settlement
    joined: dict = field(default_factory=dict)  # (forward record, backward record) -> Prefix


def read_lstm_node(walk: "GraphWalk", node) -> tuple:
    """The node's record and the model prefix it ends (memoised): (record, prefix, time, batch)."""
    findings = walk.findings
    key = id(node)
    if key in findings.nodes:
        return findings.nodes[key]
    where = describe(node)
    x = walk.data(node, lstm_node.X)
    if x.kind == "lstm":
        x = settle(walk, x, where)
    if x.kind != "features" or x.head or x.readout == "last":
        raise OutsideNeutralShapeError(f"{where}: its input X is not a sequence of features (embedding, input or LSTM "
                                       "output)", layer=walk.describe_producer(node.input[lstm_node.X]))
    decoded = lstm_node.decode(walk.index, node)
    layer = decoded.layer
    axes = tuple(tuple(a for a in axis if a != "1") for axis in x.axes)
    if len(axes) != 3 or axes[2] != ("F",) or any(len(a) != 1 for a in axes[:2]):
        raise UnsupportedError(f"{where}: its input X has axes {axes_text(x, x.axes)}, not (time, batch, features)")
    time, batch = (axes[0][0], axes[1][0]) if decoded.layout == 0 else (axes[1][0], axes[0][0])
    prefix = x.prefix
    if prefix.time_atom is not None and prefix.time_atom != time:
        raise UnsupportedError(f"{where}: runs over a different axis than the LSTM before it")
    if x.width is not None and x.width != layer.input_size:
        raise UnsupportedError(f"{where}: W expects {layer.input_size} input features but X has {x.width}")
    if x.dtype != layer.directions[0].w_ih.dtype:
        raise UnsupportedError(f"{where}: X is {x.dtype} but the weights are {layer.directions[0].w_ih.dtype}")
    input_reversed = x.reversed_atom is not None
    if input_reversed:
        # A forward LSTM over the time-reversed input is a reverse LSTM whose output comes out
        # reversed in time (Keras go_backwards).
        if x.reversed_atom != time or layer.bidirectional or layer.reverse or decoded.sequence_lens:
            raise UnsupportedError(f"{where}: runs over a time-reversed input in a way lstmconvert cannot express")
    lengths = match_lengths(walk.index, decoded.sequence_lens, node) if decoded.sequence_lens else None
    if lengths is not None and lengths.source == "padding":
        if lengths.input_name != prefix.input_name or lengths.time_atom != time:
            raise UnsupportedError(f"{where}: its sequence_lens counts padding over a different input or axis")
        if prefix.input_kind == "tokens" and lengths.pad_value != 0:
            raise UnsupportedError(f"{where}: padding is token id {lengths.pad_value:g}; lstmconvert's masked models pad with 0")
    if prefix.layers and lengths != prefix.lengths:
        raise UnsupportedError(f"{where}: its sequence_lens differs from the LSTM before it")
    record = LayerRecord(node.name or node.output[0], tuple(layer.directions), layer.reverse or input_reversed,
                         layer.clip, layer.input_forget, decoded.layout, input_reversed)
    new_prefix = Prefix(prefix.input_name, prefix.input_kind, time_atom=time, embedding_table=prefix.embedding_table,
                        embedding_node=prefix.embedding_node, layers=prefix.layers + (record,), lengths=lengths)
    findings.nodes[key] = (record, new_prefix, time, batch)
    return findings.nodes[key]


def lstm_output(walk: "GraphWalk", node, out_index: int) -> Flow:
    """Output ``out_index`` of an LSTM node: Y (all steps, per direction) or Y_h (final states)."""
    record, prefix, time, batch = read_lstm_node(walk, node)
    if out_index == 2:
        raise UnsupportedError(f"{describe(node)}: its cell state output Y_c is used; lstmconvert reads Y or Y_h")
    position = len(prefix.layers) - 1
    what = ("rev" if record.input_reversed else "seq") if out_index == 0 else "Y_h"
    entries = tuple(Entry(position, d, what) for d in range(len(record.directions)))
    if out_index == 0:
        axes = ((time,), ("D",), (batch,), ("F",)) if record.layout == 0 else ((batch,), (time,), ("D",), ("F",))
    else:
        axes = (("D",), (batch,), ("F",)) if record.layout == 0 else ((batch,), ("D",), ("F",))
    return Flow("lstm", axes, record.hidden_size, record.dtype, prefix, entries=entries)


def settle(walk: "GraphWalk", flow: Flow, consumer: str) -> Flow:
    """Turn an LSTM output into the layer's merged output, recording the layer's merge and readout."""
    if flow.kind != "lstm":
        return flow
    if flow.axis_of("D") is not None:
        raise UnsupportedError(f"{consumer} receives an LSTM output whose directions are not merged")
    prefix = flow.prefix
    last = len(prefix.layers) - 1
    record = prefix.layers[last]
    count = len(record.directions)
    if any(e.layer != last for e in flow.entries):
        raise UnsupportedError(f"{consumer} receives the state of an LSTM layer other than the last one")
    if [e.direction for e in flow.entries] != list(range(count)):
        order = [e.direction for e in flow.entries]
        raise UnsupportedError(f"{consumer} receives LSTM directions {order}; expected all of them, forward first")
    readout, reversed_output = _readout(flow, record, consumer)
    if count == 1 and flow.merge:
        raise UnsupportedError(f"{consumer}: a merge of a single direction")
    settlement = Settlement(flow.merge or "concat", reversed_output)
    if walk.findings.settlements.setdefault(record, settlement) != settlement:
        # Two consumers read the layer differently: the model branches after this LSTM.
        raise OutsideNeutralShapeError(f"{consumer}: the LSTM layer {record.node_name!r} is merged in two different "
                                       "ways", layer=f"LSTM node {record.node_name!r}")
    return Flow("features", flow.axes, record.output_size(settlement.merge), flow.dtype, prefix, readout=readout)


def _readout(flow: Flow, record: LayerRecord, consumer: str) -> tuple:
    """(readout, reversed_output) that the output entries amount to: every step, or the final state."""
    whats = [e.what for e in flow.entries]
    masked = flow.prefix.lengths is not None
    if all(w == "seq" for w in whats):
        return "sequence", False
    if whats == ["rev"] and record.reverse:
        # Keras go_backwards: the output reversed over the full padded length (padding first).
        return "sequence", True
    finals = []
    for entry in flow.entries:
        runs_backward = record.reverse or entry.direction == 1
        if entry.what == "Y_h":
            finals.append(True)
        elif entry.what in ("Y@last", "Y@first"):
            if entry.what == "Y@last" and runs_backward:
                raise UnsupportedError(
                    f"{consumer} receives the last time step of a reverse direction's output Y, which is that "
                    "direction's first step, not its final state (PyTorch: use h_n rather than output[:, -1])"
                )
            if masked:
                raise UnsupportedError(f"{consumer}: reads one time step of Y of a masked LSTM; with sequence_lens "
                                       "that is not the final state (use Y_h)")
            finals.append(entry.what == ("Y@first" if runs_backward else "Y@last"))
        else:
            finals.append(False)
    if all(finals):
        return "last", False
    raise UnsupportedError(f"{consumer} receives a mix of LSTM outputs that is neither every step nor the final state")


def separate_directions(flows: list) -> bool:
    """Two single-direction outputs of two different LSTM nodes over the same input?"""
    a, b = (f.prefix for f in flows)
    return (len(a.layers) == len(b.layers) > 0 and a.key()[:2] == b.key()[:2]
            and a.key()[2][:-1] == b.key()[2][:-1] and a.layers[-1] is not b.layers[-1]
            and all(len(f.entries) == 1 and f.axis_of("D") is None for f in flows))


def join_directions(walk: "GraphWalk", node, flows: list) -> list:
    """A forward node and a backward node over one input: one bidirectional layer (tf2onnx, unmerged)."""
    where = describe(node)
    forward, backward = (f.prefix.layers[-1] for f in flows)
    backward_settled = walk.findings.settlements.get(backward, Settlement())
    if forward.reverse or not backward.reverse or forward.bidirectional or backward.bidirectional:
        raise UnsupportedError(f"{where}: joins two LSTM nodes that are not a forward and a backward one")
    if backward_settled.reversed_output or (forward.clip, forward.input_forget) != (backward.clip, backward.input_forget):
        raise UnsupportedError(f"{where}: joins LSTM nodes with different clip/input_forget settings")
    if forward.layout != backward.layout or flows[0].prefix.lengths != flows[1].prefix.lengths:
        raise UnsupportedError(f"{where}: joins LSTM nodes with different layouts or lengths")
    key = (forward, backward)
    if key not in walk.findings.joined:
        record = LayerRecord(f"{forward.node_name}+{backward.node_name}",
                             (forward.directions[0], backward.directions[0]), False, forward.clip,
                             forward.input_forget, forward.layout, False)
        base = flows[0].prefix
        walk.findings.joined[key] = Prefix(base.input_name, base.input_kind, time_atom=base.time_atom,
                                           embedding_table=base.embedding_table, embedding_node=base.embedding_node,
                                           layers=base.layers[:-1] + (record,), lengths=base.lengths)
    prefix = walk.findings.joined[key]
    position = len(prefix.layers) - 1
    # The backward node's output was reversed back to original order ("rev" twice is "seq").
    return [f.evolve(prefix=prefix, entries=(Entry(position, d, f.entries[0].what),)) for d, f in enumerate(flows)]


def joint_prefix(flows: list, where: str) -> Prefix:
    """Flows being joined must come from one model; the deepest prefix wins (h_n of all layers)."""
    longest = max((f.prefix for f in flows), key=lambda p: len(p.layers))
    key = longest.key()
    for f in flows:
        k = f.prefix.key()
        if k[:2] != key[:2] or key[2][:len(k[2])] != k[2]:
            raise OutsideNeutralShapeError(f"{where}: combines tensors from different branches of the graph",
                                           layer=where)
    return longest
