"""Shared helpers for the ONNX tests: fixture paths, raw onnxruntime runs, bit-exact comparisons."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "onnx"


def ort_run(path: Path, feed: dict) -> np.ndarray:
    """Run ``path`` in onnxruntime (CPU) on ``feed`` as given (no layout handling); first output."""
    # NchwcTransformer crashes onnxruntime on float16 Transpose -> MatMul (see the format's runtime.py).
    inference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                             disabled_optimizers=["NchwcTransformer"])
    return inference.run(None, feed)[0]


def input_names(path: Path) -> list:
    """The graph inputs a caller feeds (initializers listed as inputs have a value already)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    stored = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in stored]


def lstm_nodes(path: Path) -> list:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n for n in graph.node if n.op_type == "LSTM"]


def node_attributes(node: onnx.NodeProto) -> dict:
    out = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def assert_bits_equal(actual, expected, what: str) -> None:
    """Same shape, dtype and bit pattern (so -0.0 and NaN payloads count too)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.tobytes() == expected.tobytes(), f"{what}: values differ"


_OPENED: list = []
_RECORDING = [False]


def _audit(event: str, args: tuple) -> None:
    if _RECORDING[0] and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


@contextmanager
def recording_opens():
    """Collect every path the process opens (via Python's audit hooks) inside the block."""
    _OPENED.clear()
    _RECORDING[0] = True
    try:
        yield _OPENED
    finally:
        _RECORDING[0] = False
