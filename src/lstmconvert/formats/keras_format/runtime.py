"""Run a Keras model file in Keras itself.

Files written by Keras 3 are opened with ``keras.saving.load_model(safe_mode=True)``. Keras 3 cannot
load tf.keras / Keras 2 LSTM files (their configs carry ``time_major``), so those run in tf_keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import LstmConvertError
from ...model import SequenceModel
from .container import open_keras_file
from .frameworks import import_keras, import_tf_keras


def run(path: Path, model: SequenceModel, inputs: np.ndarray) -> np.ndarray:
    """The file's output for batch-major ``inputs``: (N, T, F) for sequence readout, (N, F) for last."""
    gpu_only = (model.meta.get("keras") or {}).get("gpu_only_layers")
    loaded = load_file(path, gpu_only)
    try:
        outputs = loaded(np.asarray(inputs), training=False)
    except Exception as exc:
        if not gpu_only:
            raise
        raise LstmConvertError(f"Keras cannot run this file here ({_one_line(exc)}){_gpu_note(gpu_only)}") from exc
    return np.asarray(outputs)


def load_file(path: Path, gpu_only: Optional[list] = None):
    """The file loaded by the Keras that wrote it (tf_keras for tf.keras / Keras 2), in safe mode."""
    with open_keras_file(path) as handle:
        major = handle.keras_major
    if major is not None and major < 3:
        load_model = import_tf_keras().models.load_model
    else:
        load_model = import_keras().saving.load_model
    try:
        return load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras's own loader refusing the file: say so on one line
        raise LstmConvertError(f"Keras cannot load this file ({_one_line(exc)}){_gpu_note(gpu_only)}") from exc


def _gpu_note(gpu_only: Optional[list]) -> str:
    """Why a file with CuDNNLSTM layers may fail: they have no CPU kernel (and no Keras 3 class)."""
    if not gpu_only:
        return ""
    return (f"; its CuDNNLSTM layers ({', '.join(gpu_only)}) run only in tf.keras on a GPU with cuDNN, so "
            "check a conversion of it against a file that runs instead")


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
