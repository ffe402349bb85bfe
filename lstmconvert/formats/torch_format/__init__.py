"""The PyTorch format: state_dicts (.pt/.pth), TorchScript archives, torch.export programs (.pt2).

``read``/``write``/``run`` are the format interface (see ``lstmconvert.registry``); ``SequenceLSTM``
is the nn.Module lstmconvert builds, for users who want to load its files in their own code.
"""

from .config import SequenceLSTMConfig
from .module import SequenceLSTM
from .reader import read
from .runtime import run
from .writer import write

__all__ = ["read", "write", "run", "SequenceLSTM", "SequenceLSTMConfig"]
