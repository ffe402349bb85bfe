"""Run a Keras model file in Keras itself.

Files written by Keras 3 are opened with ``keras.saving.load_model(safe_mode=True)``. Keras 3 cannot
load tf.keras / Keras 2 LSTM files (their configs carry ``time_major``), so those run in tf_keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import LstmConvertError
from ...model import SequenceModel
from .container import open_keras_file
from .frameworks import import_keras, import_tf_keras


def run(path: Path, model: SequenceModel, inputs: np.ndarray) -> np.ndarray:
    """The file's output for batch-major ``inputs``: (N, T, F) for sequence readout, (N, F) for last."""
    with open_keras_file(path) as handle:
        major = handle.keras_major
    if major is not None and major < 3:
        load_model = import_tf_keras(path).models.load_model
    else:
        load_model = import_keras().saving.load_model
    try:
        loaded = load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras's own loader refusing the file: say so on one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LstmConvertError(f"{path}: Keras cannot load this file ({type(exc).__name__}: {first})") from exc
    outputs = loaded(np.asarray(inputs), training=False)
    return np.asarray(outputs)
