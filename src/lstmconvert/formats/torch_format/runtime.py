"""``run``: execute a PyTorch file on batch-major inputs, in PyTorch.

* ``.pt2``: the program itself, ``torch.export.load(path).module()`` (after the same safety check
  as reading), so what runs is exactly what was exported.
* ``.pt``/``.pth``/TorchScript: a state_dict is weights without code, so SequenceLSTM is built from
  what the reader found in the file and run; its LSTM steps are PyTorch's own kernel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ...model import SequenceModel
from .checkpoint import check_export_archive
from .module import SequenceLSTM
from .tensors import to_numpy, to_tensor
from .writer import PROGRAM_SUFFIX


def run(path: Path, model: SequenceModel, inputs: np.ndarray) -> np.ndarray:
    """Outputs of ``path`` for batch-major ``inputs`` ((N, T) ids or (N, T, F) features), batch-major."""
    x = _as_tensor(model, inputs)
    if not model.batch_first:
        x = x.transpose(0, 1).contiguous()
    if path.suffix.lower() == PROGRAM_SUFFIX:
        check_export_archive(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function = torch.export.load(path).module()
    else:
        function = SequenceLSTM.from_model(model)
    with torch.no_grad():
        y = function(x)
    if model.readout == "sequence" and not model.batch_first:
        y = y.transpose(0, 1)
    return to_numpy(y.contiguous(), "output")


def _as_tensor(model: SequenceModel, inputs: np.ndarray) -> torch.Tensor:
    array = np.asarray(inputs)
    if model.input_kind == "tokens":
        return torch.as_tensor(array.astype(np.int64))
    if array.dtype != model.dtype:
        array = array.astype(model.dtype)
    return to_tensor(array)
