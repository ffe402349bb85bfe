"""Bit-exact moves between torch tensors and numpy arrays, dtype kept.

numpy has no bfloat16, so bfloat16 goes through ml_dtypes (the same type the ONNX and Keras formats
use): the 16 bits are reinterpreted, never converted, in both directions.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UnsupportedError, require

# dtypes whose numpy twin is native; bfloat16 is handled on its own below.
_NATIVE = {torch.float16, torch.float32, torch.float64}


def to_numpy(tensor: torch.Tensor, name: str) -> np.ndarray:
    """A detached numpy copy of ``tensor`` with the same dtype and bits; ``name`` is for errors."""
    if tensor.is_meta:
        raise UnsupportedError(
            f"tensor {name} is on the 'meta' device: it has a shape but no values (it was saved from a model "
            "built on device='meta', before real weights were loaded into it)"
        )
    tensor = tensor.detach().cpu()
    if tensor.dtype in _NATIVE:
        return tensor.numpy().copy()
    if tensor.dtype == torch.bfloat16:
        ml_dtypes = require("ml_dtypes", "torch", "reading bfloat16 tensors")
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    raise UnsupportedError(
        f"tensor {name} has dtype {str(tensor.dtype).replace('torch.', '')}; lstmconvert carries "
        "float16, bfloat16, float32 and float64 weights (quantized or integer weights are not LSTM "
        "weights it can convert exactly)"
    )


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor with the same dtype and bits as ``array`` (owns its memory)."""
    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())

