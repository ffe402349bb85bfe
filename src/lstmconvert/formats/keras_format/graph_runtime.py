"""A Keras model of any shape as a whole: its input signature (from the config) and its outputs (in Keras)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ReadError
from .container import open_keras_file
from .edit_graph import graph_nodes
from .runtime import load_file


def signature(path: Path) -> list:
    """The model's inputs as ``(name, shape with None for unknown dims, numpy dtype name)``, in order.

    Read from the config with h5py/zipfile only (no Keras).
    """
    with open_keras_file(path) as handle:
        config = handle.config
    nodes, order, _ = graph_nodes(config)
    body = config.get("config") or {}
    if config.get("class_name") == "Sequential":
        first = nodes[order[0]] if order else None
        shape = None
        if first is not None:
            cfg = first.config
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        shape = shape or (config.get("build_config") or {}).get("input_shape")
        if shape is None:
            raise ReadError(path, "the Sequential model does not record its input shape")
        name = first.name if first is not None and first.class_name == "InputLayer" else "input"
        return [(name, tuple(shape), _dtype(first.config if first is not None else {}))]
    inputs = body.get("input_layers") or []
    if inputs and isinstance(inputs[0], str):
        inputs = [inputs]
    out = []
    for ref in inputs:
        node = nodes.get(str(ref[0]))
        if node is None:
            raise ReadError(path, f"the config names input {ref[0]!r} but has no such layer")
        shape = node.config.get("batch_shape") or node.config.get("batch_input_shape")
        if shape is None:
            raise ReadError(path, f"input layer {node.name!r} records no shape")
        out.append((node.name, tuple(shape), _dtype(node.config)))
    return out


def _dtype(cfg: dict) -> str:
    dtype = cfg.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name", "float32")
    return str(dtype)


def run_graph(path: Path, inputs: dict) -> list:
    """Run the whole file in the Keras that wrote it on ``inputs`` (by input name); the outputs in order."""
    names = [name for name, _, _ in signature(path)]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ReadError(path, f"no data given for input(s) {', '.join(missing)}")
    model = load_file(path)
    batch = [np.asarray(inputs[n]) for n in names]
    outputs = model(batch if len(batch) > 1 else batch[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(y) for y in outputs]
