"""Which ONNX opsets lstmconvert writes."""

from __future__ import annotations

from typing import Optional

import onnx

from ...errors import UnsupportedError

# LSTM-14 is the first LSTM with the ``layout`` attribute; the writer also relies on opset-13 forms
# (Squeeze/Unsqueeze/ReduceSum taking their axes as an input).
MIN_OPSET = 14

# The newest default-domain opset onnxruntime 1.32 loads and runs for every operator the writer
# emits (LSTM, Gather, Transpose, Reshape, Squeeze, Reduce*, MatMul, Add, Softmax...): checked by
# running written models; opset 29 is refused at load time. Hard-coded so written files do not
# change when a newer onnx package is installed.
DEFAULT_OPSET = 28

def resolve_opset(requested: Optional[int]) -> int:
    """The opset to write: ``requested`` if onnx knows it and it is >= MIN_OPSET, else the default."""
    if requested is None:
        return min(DEFAULT_OPSET, onnx.defs.onnx_opset_version())
    newest = onnx.defs.onnx_opset_version()
    if requested < MIN_OPSET:
        raise UnsupportedError(
            f"opset {requested} is too old: lstmconvert writes opset {MIN_OPSET} or newer "
            f"(LSTM-{MIN_OPSET} has the layout attribute and axes-as-input operators)"
        )
    if requested > newest:
        raise UnsupportedError(f"opset {requested} is newer than the installed onnx {onnx.__version__} knows ({newest})")
    return requested


def ir_version_for(opset: int) -> int:
    """The oldest IR version that can carry ``opset`` (older runtimes load older IR versions)."""
    return onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
