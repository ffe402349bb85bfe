"""Bit-exact moves between torch tensors and numpy arrays, dtype kept.

numpy has no bfloat16, so bfloat16 goes through ml_dtypes (the same type the ONNX and Keras formats
use): the 16 bits are reinterpreted, never converted, in both directions.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ReadError, UnsupportedError, require
from ...limits import file_budget, require_fits

# dtypes whose numpy twin is native; bfloat16 is handled on its own below.
_NATIVE = {torch.float16, torch.float32, torch.float64}


def to_numpy(tensor: torch.Tensor, name: str, exclusive: bool = False) -> np.ndarray:
    """A numpy array with ``tensor``'s dtype and bits; ``name`` is for errors.

    ``exclusive``: nothing else uses the tensor's storage and the caller drops the tensor, so the
    array takes over its memory instead of copying it (a large checkpoint then sits in memory
    once, not twice). Otherwise the array is an independent copy.
    """
    if tensor.is_meta:  # the file lacks the values: unreadable as a model, not a model it cannot carry
        raise ReadError(
            f"tensor {name} is on the 'meta' device: it has a shape but no values (it was saved from a model "
            "built on device='meta', before real weights were loaded into it)"
        )
    tensor = tensor.detach().cpu()
    # A view may span far more elements than its storage holds (zero strides): never expand an absurd one.
    require_fits(f"tensor {name}", tensor.shape, tensor.element_size(), file_budget(None, tensor.untyped_storage().nbytes()))
    if tensor.dtype in _NATIVE:
        array = tensor.numpy()
        return array if exclusive else array.copy()
    if tensor.dtype == torch.bfloat16:
        ml_dtypes = require("ml_dtypes", "torch", "reading bfloat16 tensors")
        array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return array if exclusive else array.copy()
    raise UnsupportedError(
        f"tensor {name} has dtype {str(tensor.dtype).replace('torch.', '')}; lstmconvert carries "
        "float16, bfloat16, float32 and float64 weights (quantized or integer weights are not LSTM "
        "weights it can convert exactly)"
    )


def exclusive_keys(tensors: dict) -> set:
    """Keys whose tensor is the whole of a storage no other key uses (not a view, not tied)."""
    users: dict = {}
    for key, tensor in tensors.items():
        if not tensor.is_meta:
            users.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
    return {
        keys[0] for keys in users.values()
        if len(keys) == 1 and tensors[keys[0]].is_contiguous()
        and tensors[keys[0]].untyped_storage().nbytes() == tensors[keys[0]].numel() * tensors[keys[0]].element_size()
    }


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor with the same dtype and bits as ``array`` (owns its memory)."""
    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """A torch tensor over ``array``'s own memory (no copy), for handing weights to ``torch.save``."""
    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
