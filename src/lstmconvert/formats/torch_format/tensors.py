"""Bit-exact moves between torch tensors and numpy arrays, dtype kept.

numpy has no bfloat16, so bfloat16 goes through ml_dtypes (the same type the ONNX and Keras formats
use): the 16 bits are reinterpreted, never converted, in both directions.

A checkpoint's tensors are torch tensors (read by ``torch.load``) or numpy arrays already (read
without PyTorch by ``zip_unpickler``, or from a .safetensors file); both are accepted here, and torch
is imported only when a torch tensor is at hand.
"""

from __future__ import annotations

import sys

import numpy as np

from ...errors import ReadError, UnsupportedError, require
from ...limits import file_budget, require_fits

# numpy 2 moved byte_bounds to numpy.lib.array_utils; numpy 1.x has it at the top level.
_byte_bounds = getattr(getattr(np.lib, "array_utils", None), "byte_bounds", None) or np.byte_bounds

# The weight dtypes lstmconvert carries.
WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def is_tensor(value: object) -> bool:
    """A tensor of a checkpoint: a numpy array (torch-free reading) or a torch.Tensor."""
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def shape_of(value: object) -> tuple:
    return tuple(value.shape)


def to_numpy(tensor, name: str, exclusive: bool = False) -> np.ndarray:
    """A numpy array with ``tensor``'s dtype and bits; ``name`` is for errors.

    ``exclusive``: nothing else uses the tensor's storage and the caller drops the tensor, so the
    array takes over its memory instead of copying it (a large checkpoint then sits in memory
    once, not twice). Otherwise the array is an independent copy.
    """
    if isinstance(tensor, np.ndarray):
        if tensor.dtype.name not in WEIGHT_DTYPES:
            raise _dtype_error(name, tensor.dtype.name)
        if not tensor.flags.c_contiguous:  # a view may span far more elements than its storage holds
            low, high = _byte_bounds(tensor)
            require_fits(f"tensor {name}", tensor.shape, tensor.itemsize, file_budget(None, high - low))
        return tensor if exclusive and tensor.flags.writeable else np.array(tensor, order="C", copy=True)
    import torch

    _native = {torch.float16, torch.float32, torch.float64}
    if tensor.is_meta:  # the file lacks the values: unreadable as a model, not a model it cannot carry
        raise ReadError(
            f"tensor {name} is on the 'meta' device: it has a shape but no values (it was saved from a model "
            "built on device='meta', before real weights were loaded into it)"
        )
    tensor = tensor.detach().cpu()
    # A view may span far more elements than its storage holds (zero strides): never expand an absurd one.
    require_fits(f"tensor {name}", tensor.shape, tensor.element_size(), file_budget(None, tensor.untyped_storage().nbytes()))
    if tensor.dtype in _native:
        array = tensor.numpy()
        return array if exclusive else array.copy()
    if tensor.dtype == torch.bfloat16:
        ml_dtypes = require("ml_dtypes", "torch", "reading bfloat16 tensors")
        array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return array if exclusive else array.copy()
    raise _dtype_error(name, str(tensor.dtype).replace("torch.", ""))


def _dtype_error(name: str, dtype: str) -> UnsupportedError:
    return UnsupportedError(
        f"tensor {name} has dtype {dtype}; lstmconvert carries "
        "float16, bfloat16, float32 and float64 weights (quantized or integer weights are not LSTM "
        "weights it can convert exactly)"
    )


def exclusive_keys(tensors: dict) -> set:
    """Keys whose tensor is the whole of a storage no other key uses (not a view, not tied).

    A numpy array read without PyTorch is writeable exactly when it is the whole of its storage
    (see ``zip_unpickler``); the same array object under two keys is tied.
    """
    users: dict = {}
    for key, tensor in tensors.items():
        if isinstance(tensor, np.ndarray):
            if tensor.flags.writeable:
                users.setdefault(("array", id(tensor)), []).append(key)
        elif not tensor.is_meta:
            users.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
    return {keys[0] for keys in users.values() if len(keys) == 1 and _whole(tensors[keys[0]])}


def _whole(tensor) -> bool:
    """The tensor is its whole storage, contiguously (always so for a writeable array read here)."""
    if isinstance(tensor, np.ndarray):
        return True
    return tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()


def to_tensor(array: np.ndarray):
    """A torch tensor with the same dtype and bits as ``array`` (owns its memory)."""
    import torch

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def tensor_view(array: np.ndarray):
    """A torch tensor over ``array``'s own memory (no copy), for handing weights to ``torch.save``."""
    import torch

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
