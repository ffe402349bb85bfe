"""Find, in a Keras model config of any shape, the LSTMs to widen and every layer that reads them.

The top-level model (Functional or Sequential) is read as a graph of layer calls. From each LSTM
to widen, its output is followed through width-agnostic layers (dropout, elementwise activations,
masking, pooling over time, Flatten over a known time length, Concatenate, broadcasting merges, a Dot
over time) until it reaches layers with weights on its features: the *consumers* (Dense, also under
TimeDistributed; Conv1D; LSTM/GRU/SimpleRNN and Bidirectional), whose kernels gain backward rows.
Where the LSTM's features sit on the consumer's input axis is a list of ``widening.Block``, in the
source's coordinates. Layers that mix features non-linearly are refused by name (``preserve=False``
widens LayerNormalization/BatchNormalization anyway); any other reader is refused as unknown.

Shapes (for Concatenate offsets and Flatten) come from the source model built in Keras, passed in as
``shapes``: ``shapes.output(name)`` and ``shapes.inputs(name)`` give lists of shape tuples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from ...errors import LstmConvertError, UnsupportedError
from ...widening import Block
from .graph import _calls

MODEL_CLASSES = ("Functional", "Sequential", "Model")
# Recurrent readers whose first variable is the kernel over their input features (an RNN's first cell's).
RECURRENT_CONSUMERS = ("LSTM", "GRU", "SimpleRNN", "RNN")

# Identity at inference, or elementwise per feature: the blocks go through unchanged.
_ELEMENTWISE = (
    "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "Identity", "Masking", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU",
)
# Over the time axis only (channels_last): the feature axis is untouched.
_OVER_TIME = (
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "AveragePooling1D", "MaxPooling1D", "Cropping1D",
    "ZeroPadding1D", "UpSampling1D", "RepeatVector",
)
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
# Positively homogeneous (f(x/2) = f(x)/2): merge 'ave' halving can still be undone downstream.
_HOMOGENEOUS = ("Dropout", "SpatialDropout1D", "Identity", "ActivityRegularization", "ReLU", "LeakyReLU",
                "GlobalAveragePooling1D", "GlobalMaxPooling1D", "AveragePooling1D", "MaxPooling1D", "Cropping1D",
                "ZeroPadding1D", "UpSampling1D", "RepeatVector", "Flatten", "Concatenate", "Dot", "Softmax", "Add",
                "Subtract", "Average", "Maximum", "Minimum")
NORMALIZATIONS = ("LayerNormalization", "BatchNormalization")
_NOT_WIDENABLE = (
    "GroupNormalization", "UnitNormalization", "Normalization", "RMSNormalization", "MultiHeadAttention",
    "AdditiveAttention", "GroupedQueryAttention",
)
# Attention without feature weights: followed when query, value and key are all the widened output.
_SCORE_MODES = ("dot", "concat")


@dataclass
class Node:
    """One top-level layer: its config entry and its calls' tensor inputs ``[(layer, call, index)]``."""

    name: str
    class_name: str
    entry: dict
    calls: list

    @property
    def config(self) -> dict:
        return self.entry.get("config") or {}

    def label(self) -> str:
        return f"{self.class_name} '{self.name}'"


@dataclass
class Consumer:
    """A layer whose kernel reads widened features: where they sit on its input axis."""

    node: Node
    kind: str  # "dense", "conv1d", "recurrent", "bidirectional", "normalization"
    blocks: list = field(default_factory=list)


@dataclass
class Plan:
    """What widening changes: LSTMs to wrap, consumers with their blocks, layers passed through."""

    nodes: dict
    order: list
    lstms: list  # names, in config order
    consumers: dict  # name -> Consumer
    through: dict  # name -> the LSTMs whose features pass through it
    outputs: list  # widened LSTMs whose features reach a model output unread
    mixing: list  # normalization consumers widened anyway (preserve=False)
    not_homogeneous: list  # through layers that merge 'ave' halving cannot pass exactly
    merged: set = field(default_factory=set)  # (merge layer, blocks) already followed
    refused_at: Optional[str] = None  # the layer being handled: describe_edit shows a refusal on it
    scores: list = field(default_factory=list)  # Attention layers whose scores see the backward features
    decoders: list = field(default_factory=list)  # LSTMs left unidirectional: they start from given states


def graph_nodes(model_config: dict) -> tuple:
    """``(nodes by name, names in config order, model outputs [(layer, call, index)])``."""
    cls = model_config.get("class_name")
    config = model_config.get("config")
    if cls not in MODEL_CLASSES or not isinstance(config, dict):
        raise UnsupportedError(f"model class {cls!r} cannot be edited; only Functional and Sequential")
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise LstmConvertError("the model config has no readable list of layers")
    nodes, order = {}, []
    if cls == "Sequential":
        previous = None
        for entry in entries:
            name = _entry_name(entry)
            calls = [([(previous, 0, 0)], [], {})] if previous is not None else []
            nodes[name] = Node(name, entry["class_name"], entry, calls)
            order.append(name)
            previous = name
        return nodes, order, [(previous, 0, 0)]
    for entry in entries:
        name = _entry_name(entry)
        calls, _ = _calls(entry.get("inbound_nodes", []), name)
        nodes[name] = Node(name, entry["class_name"], entry, calls)
        order.append(name)
    outputs = config.get("output_layers")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], str):
        outputs = [outputs]
    return nodes, order, [(str(o[0]), o[1], o[2]) for o in outputs or []]


def _entry_name(entry: dict) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return str(entry.get("name") or config.get("name") or entry["class_name"])


def plan_edit(model_config: dict, shapes, request, holder: Optional[list] = None) -> Plan:
    """Decide what widening changes; raise UnsupportedError naming the layer that prevents it.

    ``holder`` receives the plan as soon as it exists, so a caller sees how far a refused plan got.
    """
    nodes, order, outputs = graph_nodes(model_config)
    lstms, decoders = _lstms_to_widen(nodes, order, request.lstms)
    plan = Plan(nodes, order, lstms, {}, {}, [], [], [], decoders=decoders)
    if holder is not None:
        holder.append(plan)
    for lstm in lstms:
        _follow(plan, lstm, (lstm, 0, 0), [Block(0, _units(nodes[lstm]))], outputs, shapes, request)
    return plan


def _units(node: Node) -> int:
    if "units" in node.config:
        return int(node.config["units"])
    return int(node.config["cell"]["config"]["units"])  # RNN(LSTMCell)


def _is_lstm(node: Node) -> bool:
    """An ``LSTM`` layer, or an ``RNN`` layer around one ``LSTMCell`` (which computes the same)."""
    if node.class_name == "LSTM":
        return True
    cell = node.config.get("cell") if node.class_name == "RNN" else None
    return isinstance(cell, dict) and cell.get("class_name") == "LSTMCell" and isinstance(cell.get("config"), dict)


def _lstms_to_widen(nodes: dict, order: list, wanted: tuple) -> tuple:
    """(the LSTMs to widen, the decoders: LSTMs left unidirectional because they start from given states)."""
    lstms = [n for n in order if _is_lstm(nodes[n])]
    decoders = [n for n in lstms if len(nodes[n].calls) == 1 and not nodes[n].config.get("go_backwards")
                and _given_states(nodes[n])]
    if wanted:
        for name in wanted:
            if name not in nodes:
                raise UnsupportedError(f"--lstm {name}: the model has no top-level layer named {name!r} "
                                       f"(its LSTMs: {', '.join(lstms) or 'none'})")
            if not _is_lstm(nodes[name]):
                raise UnsupportedError(f"--lstm {name}: layer {nodes[name].label()} is not a "
                                       "unidirectional LSTM")
        lstms = [n for n in lstms if n in wanted]
    kept = []
    for name in lstms:
        cfg = nodes[name].config
        if cfg.get("go_backwards"):
            if wanted:
                raise UnsupportedError(f"LSTM '{name}' runs backward (go_backwards); only forward LSTMs "
                                       "can be widened")
            kept.append(name)
            continue
        if cfg.get("stateful"):
            raise UnsupportedError(f"LSTM '{name}' has stateful=True, which in-place widening does not handle")
        if len(nodes[name].calls) != 1:
            raise UnsupportedError(f"LSTM '{name}' is called {len(nodes[name].calls)} times (a shared "
                                   "layer); in-place widening handles LSTMs called once")
        if name in decoders:
            # Bidirectional would split the states it is given between its two directions.
            if wanted:
                raise UnsupportedError(f"LSTM '{name}' starts from states it is given (initial_state), which a "
                                       "Bidirectional would split between its directions; widen the encoder")
            kept.append(name)
    lstms = [n for n in lstms if n not in kept]
    if not lstms:
        nested = [n for n in order if nodes[n].class_name in MODEL_CLASSES and '"LSTM"' in json.dumps(nodes[n].entry)]
        inside = f" (models used as layers, here {', '.join(map(repr, nested))}, are kept as they are)" if nested else ""
        raise UnsupportedError(f"the model holds no unidirectional top-level LSTM to widen{inside}")
    return lstms, decoders


def _given_states(node: Node) -> bool:
    """Whether the layer's call passes it initial states (Keras 3: a keyword; Keras 2: extra inputs)."""
    tensors, _, kwargs = node.calls[0]
    return kwargs.get("initial_state") is not None or len(tensors) > 1


def _readers(nodes: dict, tensor: tuple) -> list:
    """(node, call index, argument position) of every call that reads ``tensor``."""
    found = []
    for node in nodes.values():
        for k, (tensors, _, _) in enumerate(node.calls):
            for position, ref in enumerate(tensors):
                if (ref[0], ref[1], ref[2]) == tensor:
                    found.append((node, k, position))
    return found


def _follow(plan: Plan, lstm: str, tensor: tuple, blocks: list, outputs: list, shapes, request) -> None:
    """Walk from ``tensor`` (holding the LSTM's features at ``blocks`` on its last axis) to its consumers."""
    if tensor in outputs:
        plan.outputs.append(lstm)
    for node, call, position in _readers(plan.nodes, tensor):
        cls, cfg = node.class_name, node.config
        plan.refused_at = node.name  # until the node is handled
        if len(node.calls) != 1:
            raise UnsupportedError(f"{node.label()} reads LSTM '{lstm}' and is called {len(node.calls)} "
                                   "times (a shared layer); its weights cannot be widened for one call only")
        kind = _consumer_kind(node)
        if kind is not None:
            _add_consumer(plan, node, kind, blocks, shapes, request)
            plan.refused_at = None
            if kind == "normalization":  # per-feature parameters: its output carries the widened features on
                _follow(plan, lstm, (node.name, call, 0), blocks, outputs, shapes, request)
            continue
        nxt = _through(node, position, blocks, shapes, lstm, plan)
        plan.refused_at = None
        if cls in _MERGES or cls == "Attention":
            key = (node.name, tuple(nxt))
            if key in plan.merged:  # several widened LSTMs meet here: follow the sum once
                continue
            plan.merged.add(key)
        plan.through.setdefault(node.name, [])
        if lstm not in plan.through[node.name]:
            plan.through[node.name].append(lstm)
        if cls not in _HOMOGENEOUS and not (cls == "Activation" and cfg.get("activation") in ("relu", "linear")):
            plan.not_homogeneous.append(node.name)
        _follow(plan, lstm, (node.name, call, 0), nxt, outputs, shapes, request)


def _consumer_kind(node: Node) -> Optional[str]:
    cls, cfg = node.class_name, node.config
    if cls == "Dense":
        return "dense"
    if cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        return "dense" if inner.get("class_name") == "Dense" else None
    if cls == "Conv1D":
        return "conv1d"
    if cls in RECURRENT_CONSUMERS:
        return "recurrent"
    if cls == "Bidirectional":
        inner = (cfg.get("layer") or {}).get("class_name")
        return "bidirectional" if inner in RECURRENT_CONSUMERS else None
    if cls in NORMALIZATIONS:
        return "normalization"
    return None


def _add_consumer(plan: Plan, node: Node, kind: str, blocks: list, shapes, request) -> None:
    cfg = node.config
    if kind == "conv1d" and (cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("groups", 1) != 1):
        raise UnsupportedError(f"{node.label()} reads an LSTM but is not a channels_last Conv1D with "
                               "groups=1; lstmconvert cannot place the backward channels")
    if kind == "normalization":
        axis = cfg.get("axis", -1)
        rank = len(shapes.inputs(node.name)[0])
        if [a % rank for a in (axis if isinstance(axis, list) else [axis])] != [rank - 1]:
            raise UnsupportedError(f"{node.label()} normalizes over axis {axis!r} of an LSTM's output; "
                                   "lstmconvert cannot widen it")
        if request.preserve:
            raise UnsupportedError(
                f"{node.label()} reads the LSTM's output and mixes its features non-linearly, so no "
                "choice of weights keeps the model's function; --no-preserve widens it anyway"
            )
        plan.mixing.append(node.name)
    consumer = plan.consumers.setdefault(node.name, Consumer(node, kind))
    for block in blocks:
        if any(b.start < block.start + block.width and block.start < b.start + b.width for b in consumer.blocks):
            raise UnsupportedError(f"{node.label()} reads overlapping LSTM features twice")
        consumer.blocks.append(block)


def _through(node: Node, position: int, blocks: list, shapes, lstm: str, plan: Plan) -> list:
    """The blocks on the output of a layer the LSTM's features pass through; refuse what mixes them."""
    cls, cfg = node.class_name, node.config
    label = node.label()
    if cls in _NOT_WIDENABLE:
        raise UnsupportedError(
            f"{label} reads LSTM '{lstm}' and mixes its features in ways lstmconvert cannot see as "
            "Dense weights, so the backward half cannot be placed"
        )
    if cls in _ELEMENTWISE or (cls == "Activation" and cfg.get("activation") not in ("softmax", "log_softmax")):
        return blocks
    if cls == "Softmax":
        axis = cfg.get("axis", -1)
        axes = axis if isinstance(axis, list) else [axis]
        rank = len(shapes.inputs(node.name)[0])
        if all(a % rank != rank - 1 for a in axes):
            return blocks  # over time: each feature on its own
    elif cls in _OVER_TIME:
        if cfg.get("data_format", "channels_last") == "channels_last":
            return blocks
    elif cls == "Flatten":
        shape = shapes.inputs(node.name)[0]
        if None in shape[1:-1]:
            raise UnsupportedError(f"{label} flattens LSTM '{lstm}' output over an unknown number of steps; "
                                   "give the model a fixed sequence length")
        steps, width = 1, shape[-1]
        for dim in shape[1:-1]:
            steps *= dim
        return [Block(t * width + b.start, b.width) for t in range(steps) for b in blocks]
    elif cls == "Concatenate":
        inputs = shapes.inputs(node.name)
        rank = len(inputs[0])
        if cfg.get("axis", -1) % rank == rank - 1:
            offset = sum(int(s[-1]) for s in inputs[:position])
            return [Block(offset + b.start, b.width) for b in blocks]
    elif cls in _MERGES:
        tensors = node.calls[0][0]
        others = [(tensors[k], s) for k, s in enumerate(shapes.inputs(node.name)) if k != position]
        if all(s[-1] == 1 for _, s in others):
            return blocks  # the other operands broadcast over the features
        if all(_lstm_blocks(plan, ref) == blocks for ref, _ in others):
            return blocks  # widened LSTMs meet: [fa|ba] + [fb|bb] keeps forward and backward apart
    elif cls == "Attention":
        tensors = node.calls[0][0]
        if (len(tensors) in (2, 3) and cfg.get("score_mode", "dot") in _SCORE_MODES
                and all(_lstm_blocks(plan, ref) == blocks for ref in tensors)):
            # Self-attention over the widened output: the value's features pass through; the scores
            # (query . key) see the backward features too, exact only while those are zero.
            if node.name not in plan.scores:
                plan.scores.append(node.name)
            return blocks
        raise UnsupportedError(f"{label} reads LSTM '{lstm}' output, but not as query, value and key at once; "
                               "lstmconvert follows self-attention over one widened LSTM output only")
    elif cls == "Dot":
        axes = cfg.get("axes")
        axes = axes if isinstance(axes, list) else [axes, axes]
        inputs = shapes.inputs(node.name)
        if (position == 1 and len(inputs) == 2 and all(len(s) == 3 for s in inputs) and not cfg.get("normalize")
                and [a % 3 for a in axes] == [1, 1]):
            return blocks  # sum over time weighted by the other operand: features stay on the last axis
    else:
        raise UnsupportedError(
            f"{label} reads LSTM '{lstm}' output; lstmconvert does not know how to widen a {cls} "
            "(it widens Dense, TimeDistributed(Dense), Conv1D, LSTM and Bidirectional readers)"
        )
    raise UnsupportedError(f"{label} reads LSTM '{lstm}' output in a way that moves or mixes its "
                           "features; lstmconvert cannot place the backward half")


def _lstm_blocks(plan: Plan, ref: tuple) -> Optional[list]:
    """The blocks of a tensor that is a widened LSTM's output after elementwise layers only, else None."""
    node = plan.nodes.get(ref[0])
    while node is not None and node.name not in plan.lstms:
        if node.class_name not in _ELEMENTWISE + _OVER_TIME or len(node.calls) != 1 or len(node.calls[0][0]) != 1:
            return None
        node = plan.nodes.get(node.calls[0][0][0][0])
    return None if node is None else [Block(0, _units(node))]
