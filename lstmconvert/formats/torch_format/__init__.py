"""The PyTorch format: state_dicts (.pt/.pth), TorchScript archives, torch.export programs (.pt2).

``read``/``write``/``run`` are the format interface (see ``lstmconvert.registry``); ``edit`` widens
named nn.LSTMs inside a state_dict of any shape, ``describe_edit``/``prove_edit`` tell what it would
change and prove what it changed; ``SequenceLSTM`` is the nn.Module lstmconvert builds, for users who
want to load its files in their own code.
"""

from .config import SequenceLSTMConfig
from .edit_proof import describe_edit, prove_edit
from .editor import edit
from .module import SequenceLSTM
from .reader import read
from .runtime import run
from .writer import write

__all__ = ["read", "write", "run", "edit", "describe_edit", "prove_edit", "SequenceLSTM", "SequenceLSTMConfig"]
