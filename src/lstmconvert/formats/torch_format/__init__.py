"""The PyTorch format: state_dicts (.pt/.pth), .safetensors, TorchScript archives, torch.export programs (.pt2).

``read``/``write``/``run`` are the format interface (see ``lstmconvert.registry``); ``edit`` widens
named nn.LSTMs inside a state_dict of any shape, ``describe_edit``/``prove_edit`` tell what it would
change and prove what it changed; ``SequenceLSTM`` is the nn.Module lstmconvert builds, for users who
want to load its files in their own code.

Importing this package does not import torch: plain ``torch.save`` zip archives and .safetensors
files are read with numpy (see ``zip_unpickler``, ``safetensors_io``). torch is imported when a file
needs it (TorchScript, .pt2, legacy archives), to write .pt/.pt2, to run a model, or for ``SequenceLSTM``.
"""

from ...errors import require
from .config import SequenceLSTMConfig
from .reader import read


def write(model, path, options) -> None:
    """Write ``model`` to ``path``: see ``writer`` (.pt/.pt2) and ``safetensors_io``."""
    from .safetensors_io import SUFFIX, write_safetensors

    if path.suffix.lower() == SUFFIX:
        return write_safetensors(model, path)
    require("torch", "torch", f"writing {path.suffix} files")
    from .writer import write as write_torch

    return write_torch(model, path, options)


def run(path, model, inputs):
    """Run a PyTorch file in PyTorch: see ``runtime``."""
    require("torch", "torch", "running PyTorch models")
    from .runtime import run as run_torch

    return run_torch(path, model, inputs)


def edit(src, dst, request):
    """Widen named nn.LSTMs inside a state_dict of any shape: see ``editor``."""
    require("torch", "torch", "widening PyTorch files in place")
    from .editor import edit as edit_torch

    return edit_torch(src, dst, request)


def describe_edit(path, request):
    """Every module of a state_dict with its role in in-place widening: see ``edit_proof``."""
    require("torch", "torch", "describing PyTorch files for in-place widening")
    from .edit_proof import describe_edit as describe

    return describe(path, request)


def prove_edit(src, dst, request):
    """A structural proof that ``dst`` is ``src`` widened in place: see ``edit_proof``."""
    require("torch", "torch", "checking PyTorch files widened in place")
    from .edit_proof import prove_edit as prove

    return prove(src, dst, request)


def __getattr__(name: str):
    if name == "SequenceLSTM":  # an nn.Module: importing it imports torch
        from .module import SequenceLSTM

        return SequenceLSTM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["read", "write", "run", "edit", "describe_edit", "prove_edit", "SequenceLSTM", "SequenceLSTMConfig"]
