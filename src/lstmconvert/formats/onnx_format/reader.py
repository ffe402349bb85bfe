"""``read``: an ONNX file -> the neutral model.

How the reader is built, one job per module:

- ``graph_index``: producers, consumers and constant folding over the graph (``node_arguments``,
  a leaf, reads op arguments in every opset; ``symbolic`` follows run-time shape computations).
- ``graph_reader``: checks on the graph as a whole (outputs, inputs, stored weights, the output's
  layout), then the walk, then the build.
- ``graph_walk``: asks, from the graph output back, what each tensor on the data path holds (a
  ``flow.Flow``), dispatching on op type through ``op_handlers.HANDLERS``. Layout ops are rules of
  the flow algebra in ``layout``; LSTM nodes, how their outputs are read and tf2onnx's split
  directions are ``lstm_stack`` (with ``lstm_node`` decoding one node's weights).
- ``model_builder``: assembles the ``SequenceModel`` from the walk's immutable records once the
  walk is over, so nothing is patched into half-built layers.

A node that has no place in ``[embedding] -> LSTM stack -> [dense head]`` is refused with
``OutsideNeutralShapeError`` naming it, which lets ``convert`` widen such a file in place instead.
"""

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


def open_graph(path: Path) -> tuple:
    """(model, default-domain opset) of an ONNX file, its local functions inlined: what the reader and the
    in-place editor both walk."""
    model = load_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ReadError("imports no default-domain opset, so it has no LSTM operator")
    if model.functions:
        # Exporters may wrap layers in local functions; inlining exposes their nodes.
        model = onnx.inliner.inline_local_functions(model)
    return model, opset


def read(path: Path, hints: ReadHints) -> SequenceModel:
    """Read an ONNX file whose graph is ``[embedding] -> LSTM node(s) -> [dense head]``."""
    model, opset = open_graph(path)
    if not any(node.op_type == "LSTM" and node.domain in ("", "ai.onnx") for node in model.graph.node):
        raise ReadError(f"the graph has no LSTM node{_no_lstm_hint(model.graph)}")
    return GraphReader(GraphIndex(model.graph, opset, model)).read(hints)


def _no_lstm_hint(graph: onnx.GraphProto) -> str:
    """Why a graph may have no LSTM node: a recurrence written as a loop, or another kind of RNN."""
    for node in graph.node:
        if node.op_type in ("GRU", "RNN"):
            return f" ({describe(node)}: lstmconvert reads LSTMs only)"
    for node in graph.node:
        if node.op_type in ("Loop", "Scan"):
            return (f" ({describe(node)} computes a recurrence step by step; only LSTM operators are read. "
                    "tf2onnx writes such loops for Keras LSTMs with a mask or recurrent_dropout: convert the "
                    "Keras file itself instead)")
    ops = {node.op_type for node in graph.node}
    if {"Sigmoid", "Tanh"} <= ops and ops & {"MatMul", "Gemm"}:
        return (" (its MatMul, Sigmoid and Tanh ops look like a recurrence unrolled step by step, as Keras "
                "unroll=True or a loop over nn.LSTMCell export it; only LSTM operators are read)")
    return ""
