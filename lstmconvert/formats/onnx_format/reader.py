"""``read``: an ONNX file -> the neutral model."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.inliner

from ...errors import ReadError
from ...model import SequenceModel
from ...options import ReadHints
from .external_data import load_model
from .graph_index import GraphIndex, describe
from .graph_reader import GraphReader


def read(path: Path, hints: ReadHints) -> SequenceModel:
    """Read an ONNX file whose graph is ``[embedding] -> LSTM node(s) -> [dense head]``."""
    model = load_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ReadError(path, "imports no default-domain opset, so it has no LSTM operator")
    if model.functions:
        # Exporters may wrap layers in local functions; inlining exposes their nodes.
        model = onnx.inliner.inline_local_functions(model)
    if not any(node.op_type == "LSTM" and node.domain in ("", "ai.onnx") for node in model.graph.node):
        loops = [node for node in model.graph.node if node.op_type in ("Loop", "Scan")]
        hint = f" ({describe(loops[0])} computes a recurrence step by step; only LSTM operators are read)" if loops else ""
        raise ReadError(path, f"the graph has no LSTM node{hint}")
    return GraphReader(GraphIndex(model.graph, opset, model)).read(hints)
