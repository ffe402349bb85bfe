"""``edit``: widen the LSTM nodes inside an ONNX graph of any shape, keeping everything else.

Steps: load the file (external data checked as the reader does), pick the forward LSTM nodes (all,
or those named), rewire their outputs for bidirectional results (``lstm_widen``), follow the widened
values to their consumers (``consumer_walk``), stack the backward direction's weights, then apply the
recorded changes to the graph and write it. Only the LSTM nodes, the consumers' weights, Reshape
targets that name the feature width and per-feature constants on the way change; every other node,
initializer and attribute is written as it was. The result passes ``onnx.checker`` (full check).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ...convert import Preservation, PreservationWarning, UntrainableWarning, check_options, consumer_problem, exact_reason
from ...errors import UnsupportedError, WriteError
from ...options import EditRequest, EditResult
from ...widening import Initialiser
from . import weight_stream
from .consumer_walk import walk
from .edit_context import EditContext, Stacked, node_key
from .graph_builder import PENDING_BYTES
from .graph_index import GraphIndex
from .lstm_widen import rewire_outputs, select_lstms, stack_directions, widened_attributes
from .reader import open_graph
from .writer import EXTERNAL_DATA_THRESHOLD

# Where a widened graph output's LSTM features sit (verify compares the source's part of it).
WIDENED_OUTPUTS_KEY = "lstmconvert.widened_outputs"
# Which LSTM nodes were widened in place, and how: the file says it was edited (verify checks it whole).
IN_PLACE_KEY = "lstmconvert.widened_in_place"


def edit(src: Path, dst: Path, request: EditRequest) -> EditResult:
    """Write ``dst``: ``src`` with its (requested) forward LSTM nodes bidirectional and consumers widened."""
    ctx, wide = plan(src, request)
    preservation = _preservation(ctx, wide)
    pending = apply(ctx, wide)
    write_edited(ctx.model, dst, pending)
    return EditResult(widened=ctx.widened, consumers=ctx.consumers, preservation=preservation, notes=ctx.notes)


def describe_edit(path: Path, request: EditRequest) -> list:
    """Every node of the graph with its role in the widening and what would change (nothing is written).

    A widening the walk refuses is shown on the node that stops it (``change`` starts with "refused:").
    """
    holder = []
    try:
        ctx, _ = plan(path, request, holder)
    except UnsupportedError as exc:
        if not holder or holder[0].refused_at is None:
            raise
        ctx = holder[0]
        role, _ = ctx.roles.get(ctx.refused_at, ("other", ""))
        ctx.roles[ctx.refused_at] = (role, f"refused: {exc}")
    rows = []
    for node in ctx.graph.node:
        role, change = ctx.roles.get(node_key(node), ("other", ""))
        rows.append({"name": node.name or node.output[0], "type": node.op_type, "role": role, "change": change})
    return rows


def plan(path: Path, request: EditRequest, holder: Optional[list] = None) -> tuple:
    """Load ``path`` and record every change; returns (EditContext, {value name: Wide}).

    ``holder`` receives the context as soon as it exists, so a caller sees how far a refused plan got.
    """
    check_options(request.backward, request.merge)
    if request.consumers:
        raise UnsupportedError("--consumer is for PyTorch state_dicts; an ONNX graph finds its consumers itself")
    model, opset = open_graph(path)
    style = "keras" if model.producer_name.lower().startswith(("tf2onnx", "keras2onnx")) else "torch"
    ctx = EditContext(model, GraphIndex(model.graph, opset, model), request, Initialiser(request.seed, style))
    if holder is not None:
        holder.append(ctx)
    lstms = select_lstms(ctx)
    seeds = {}
    for node in lstms:
        seeds.update(rewire_outputs(ctx, node))
    # sum and mul keep every shape and leave the consumers' weights as they are: nothing to follow.
    wide = walk(ctx, seeds) if request.merge in ("concat", "ave") else seeds
    for node in lstms:
        stack_directions(ctx, node)
    return ctx, wide


def _preservation(ctx: EditContext, wide: dict) -> Preservation:
    request = ctx.request
    outputs = [o.name for o in ctx.graph.output if o.name in wide]
    if ctx.lossy:
        verdict = Preservation("none", "; ".join(ctx.lossy) + " (--no-preserve)")
    elif consumer_problem(request.merge, request.backward, request.preserve):
        verdict = Preservation("none", consumer_problem(request.merge, request.backward, request.preserve))
    elif outputs and request.merge == "concat":
        verdict = Preservation("forward-half", f"graph output(s) {', '.join(map(repr, outputs))} come from the widened "
                               "features and double in width; their forward half equals the source's output")
    elif outputs and request.merge == "ave":
        verdict = Preservation("none", f"merge 'ave' halves graph output(s) {', '.join(map(repr, outputs))} and no "
                               "consumer undoes it")
    else:
        verdict = Preservation("exact", exact_reason(request.merge))
    if verdict.status == "none":
        warnings.warn(f"the widened model is not function-preserving: {verdict.reason}", PreservationWarning, stacklevel=3)
    if request.backward == "zeros" and request.merge == "concat" and request.preserve:
        warnings.warn("--backward zeros with --merge concat gives a backward direction that never trains (its output "
                      "and the weights reading it are all zero); use --backward copy or random to fine-tune",
                      UntrainableWarning, stacklevel=3)
    return verdict


def apply(ctx: EditContext, wide: dict) -> list:
    """Change the loaded graph as recorded; returns the large new weights as ``weight_stream.PendingTensor``s."""
    graph = ctx.graph
    lstm_keys = {key for key, (role, _) in ctx.roles.items() if role == "lstm"}
    stale = set()  # values whose shape changes: their value_info goes
    nodes = []
    graph_inputs = {i.name for i in graph.input}
    initializers = {t.name: t for t in graph.initializer}
    touched, pending = set(), []
    for node in list(graph.node):
        key = node_key(node)
        nodes += ctx.inserted.get(("before",) + key, [])
        for (k, slot), name in ctx.renamed_inputs.items():
            if k == key:
                node.input[slot] = name
        for (k, slot), array in ctx.weights.items():
            if k != key:
                continue
            name = node.input[slot]
            consumers = ctx.index.consumers.get(name, [])
            exclusive = (name in initializers and name not in graph_inputs and len(consumers) == 1
                         and list(node.input).count(name) == 1)
            new_name = name if exclusive else ctx.fresh(f"{name}_widened")
            if exclusive:  # the old tensor goes; its name carries the new value
                graph.initializer.remove(initializers.pop(name))
            else:
                touched.add(name)
                node.input[slot] = new_name
            rows = array.rows if isinstance(array, Stacked) else [np.ascontiguousarray(array)]
            if array.nbytes >= PENDING_BYTES:  # written straight from these arrays
                data_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(array.dtype))
                pending.append(weight_stream.PendingTensor(new_name, tuple(array.shape), data_type, rows))
            else:
                whole = array.array() if isinstance(array, Stacked) else rows[0]
                graph.initializer.append(numpy_helper.from_array(whole, new_name))
            stale.add(new_name)
        if key in lstm_keys:
            attributes = widened_attributes(node)
            del node.attribute[:]
            node.attribute.extend(attributes)
            stale.update(node.output)
        for (k, slot), name in ctx.renamed_outputs.items():
            if k == key:
                node.output[slot] = name
        nodes.append(node)
        nodes += ctx.inserted.get(key, [])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(ctx.new_initializers)
    # The old weights that no node reads any more go (an initializer, or the Constant node holding them).
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    orphaned = [t for t in graph.initializer if t.name in touched and t.name not in used and t.name not in graph_inputs]
    for tensor in orphaned:
        graph.initializer.remove(tensor)
    dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] in touched and n.output[0] not in used]
    for node in dead:
        graph.node.remove(node)
    if ctx.request.merge == "concat":
        stale.update(wide)
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    _widen_declared_outputs(ctx, wide)
    record = {"lstms": ctx.widened, "merge": ctx.request.merge, "backward": ctx.request.backward,
              "preserve": ctx.request.preserve}
    _set_metadata(ctx.model, IN_PLACE_KEY, json.dumps(record, sort_keys=True))
    return pending


def _set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    entry = next((p for p in model.metadata_props if p.key == key), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = key
    entry.value = value


def _widen_declared_outputs(ctx: EditContext, wide: dict) -> None:
    placed = {}
    for output in ctx.graph.output:
        state = wide.get(output.name)
        if state is None:
            continue
        placed[output.name] = state.to_json()
        dims = output.type.tensor_type.shape.dim
        if ctx.request.merge == "concat" and len(dims) == state.rank and dims[state.axis].HasField("dim_value"):
            dims[state.axis].dim_value = state.widened_size("concat")
    if placed and ctx.request.merge == "concat":
        _set_metadata(ctx.model, WIDENED_OUTPUTS_KEY, json.dumps(placed, sort_keys=True))


def write_edited(model: onnx.ModelProto, path: Path, pending: list) -> None:
    """Check ``model`` (plus ``pending`` weights) with the full ONNX checker, then write it as the writer does.

    Large initializers leave the protobuf message first (it cannot hold 2 GB, and serializing it
    would copy them all); like ``pending`` they are streamed into the file, or past 2 GB into
    ``<name>.onnx.data``.
    """
    graph = model.graph
    listed = {i.name for i in graph.input}
    pending, kept = list(pending), []
    for tensor in graph.initializer:
        raw = len(tensor.raw_data) if tensor.HasField("raw_data") else 0
        if raw >= PENDING_BYTES and tensor.name not in listed:
            data = np.frombuffer(tensor.raw_data, dtype=np.uint8)
            tensor.ClearField("raw_data")  # one copy of the bytes at a time
            pending.append(weight_stream.PendingTensor(tensor.name, tuple(tensor.dims), tensor.data_type, [data]))
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    try:
        onnx.checker.check_model(weight_stream.checkable(model, pending), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise WriteError(path, f"the widened graph fails the ONNX checker: {str(exc).strip().splitlines()[0]}") from exc
    if sum(t.nbytes for t in pending) > EXTERNAL_DATA_THRESHOLD:
        weight_stream.write_external(model, pending, path)
    else:
        weight_stream.write_inline(model, pending, path)
