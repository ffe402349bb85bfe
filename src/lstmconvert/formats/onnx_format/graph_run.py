"""A whole ONNX graph as a function: its input signature, and a run of every output in onnxruntime.

``verify`` uses these for models outside the neutral shape (a conv front end, attention pooling,
several inputs or outputs), where the neutral model's single input and output do not apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ...errors import LstmConvertError
from .external_data import load_model
from .runtime import _first_line, _inference


def signature(path: Path) -> list:
    """The graph's inputs as (name, shape with None for symbolic axes, numpy dtype name), in order."""
    model = load_model(path)
    stored = {t.name for t in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in stored:  # an initializer listed as an input has a value already
            continue
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
        out.append((value.name, shape, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name))
    return out


def axis_names(path: Path) -> dict:
    """{graph input name: [symbolic name or None per axis]} (exporters name dynamic axes "batch", "time"...)."""
    model = onnx.load_model(str(path), load_external_data=False)
    return {value.name: [d.dim_param or None for d in value.type.tensor_type.shape.dim] for value in model.graph.input}


def run_graph(path: Path, inputs: dict) -> list:
    """Every graph output of ``path`` for ``inputs`` ({input name: array}), computed by onnxruntime."""
    import onnxruntime

    session = _inference(onnxruntime, path)
    try:
        return [np.asarray(o) for o in session.run(None, dict(inputs))]
    except Exception as exc:
        raise LstmConvertError(f"onnxruntime failed to run it: {_first_line(exc)}").at(path) from exc


def widened_outputs(path: Path) -> dict:
    """{graph output name: {"axis", "size", "blocks"}} for outputs an in-place widening made wider."""
    from .editor import WIDENED_OUTPUTS_KEY
    import json

    model = onnx.load_model(str(path), load_external_data=False)
    entry = next((p.value for p in model.metadata_props if p.key == WIDENED_OUTPUTS_KEY), None)
    return json.loads(entry) if entry else {}


def length_inputs(path: Path) -> set:
    """Graph inputs whose values reach an LSTM's ``sequence_lens`` (they hold sequence lengths)."""
    from .graph_index import GraphIndex
    from .lstm_node import SEQUENCE_LENS

    model = load_model(path)
    index = GraphIndex(model.graph, 13, model)
    found = set()
    for value in index.inputs:
        frontier, seen = [value.name], set()
        while frontier and value.name not in found:
            name = frontier.pop()
            seen.add(name)
            for node in index.consumers.get(name, []):
                if node.op_type == "LSTM" and len(node.input) > SEQUENCE_LENS and node.input[SEQUENCE_LENS] == name:
                    found.add(value.name)
                frontier += [o for o in node.output if o and o not in seen]
    return found


def edited_in_place(path: Path) -> bool:
    """True if ``path`` was written by in-place widening (it holds more than an LSTM stack)."""
    from .editor import IN_PLACE_KEY

    model = onnx.load_model(str(path), load_external_data=False)
    return any(p.key == IN_PLACE_KEY for p in model.metadata_props)


def output_names(path: Path) -> list:
    return [o.name for o in onnx.load_model(str(path), load_external_data=False).graph.output]


def token_ranges(path: Path) -> dict:
    """{graph input name: table rows} for integer inputs used as Gather indices into a constant table."""
    from .graph_index import GraphIndex, attribute

    model = load_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    index = GraphIndex(model.graph, opset, model)
    tables = {}
    for value in index.inputs:
        for node in index.consumers.get(value.name, []):
            if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == value.name:
                table = index.const(node.input[0])
                if table is not None:
                    tables[value.name] = int(table.shape[attribute(node, "axis", 0) % table.ndim])
    return tables
