""".safetensors files, read and written with the ``safetensors`` library's numpy API (no torch).

A .safetensors file is a state_dict without pickle: a JSON header (names, dtypes, shapes, offsets,
and a ``__metadata__`` table of strings) followed by the raw tensor bytes. Reading gives the same
``Checkpoint`` a ``torch.save`` file gives, so the structure is found the same way (names, shapes,
and the ``--embedding``/``--head`` hints), except that the file does not keep the state_dict's key
order (safetensors sorts the keys), so position does not decide which 2-D tensor is the embedding
and which the head (``discover``'s ``ordered=False``). Writing stores the tensors under the keys a ``.pt`` would
get (the source's own, or SequenceLSTM's canonical naming) and lstmconvert's module configuration
as the ``__metadata__`` entry ``"lstmconvert"`` (the JSON a ``.pt`` keeps in ``_metadata``), so
both ``SequenceLSTM.from_checkpoint(path)`` and a user's
``model.load_state_dict(safetensors.torch.load_file(path), strict=True)`` work.

bfloat16 goes through ml_dtypes, which safetensors' numpy API understands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ReadError, require
from ...model import SequenceModel
from .config import METADATA_KEY, config_from_model, metadata_blob
from .naming import canonical_naming, source_naming, state_arrays

SUFFIX = ".safetensors"


def load_safetensors(path: Path) -> tuple:
    """``(tensors, lstmconvert metadata JSON or None)``: numpy arrays in file order; ReadError if damaged."""
    safetensors = require("safetensors", "torch", "reading .safetensors files")
    try:
        with safetensors.safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # SafetensorError, and TypeError/ValueError for dtypes numpy lacks
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ReadError(path, f"not a readable .safetensors file ({text})") from exc
    return tensors, metadata.get(METADATA_KEY)


def write_safetensors(model: SequenceModel, path: Path) -> None:
    """The model's weights under the keys a .pt gets, config in ``__metadata__``."""
    numpy_api = require("safetensors.numpy", "torch", "writing .safetensors files")
    config = config_from_model(model)  # refuses what PyTorch's LSTM cannot compute
    naming = source_naming(model, config) or canonical_naming(config)
    arrays = {key: np.ascontiguousarray(array) for key, array in state_arrays(model, naming).items()}
    numpy_api.save_file(arrays, str(path), metadata={METADATA_KEY: metadata_blob(config, naming)})
