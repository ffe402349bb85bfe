"""Write the neutral model as a Keras 3 model: ``.keras`` archive or full-model ``.h5``.

``model_config`` describes the Keras model (``Input -> [Embedding | Masking] -> LSTM /
Bidirectional(LSTM) ... -> Dense ...``) as Keras serializes it, and ``file_writer`` writes the file
as Keras's own savers lay it out, without importing Keras or TensorFlow: building Keras variables,
``set_weights`` and ``model.save`` made a large conversion several times slower than the bytes it
writes. ``keras.saving.load_model(path, safe_mode=True)`` opens the result: no Lambda layer, no
custom object.

Keras models are batch-major. A time-major source (``batch_first=False``) is written as the same
network taking ``(batch, time, ...)`` input; a LayoutWarning says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ...capabilities import capabilities, check_carries
from ...errors import UnsupportedError, WriteError
from ...model import SequenceModel
from ...options import WriteOptions
from .config import keras3_activation
from .file_writer import write_archive, write_legacy_h5
from .model_config import flipped, keras_model, needs_flip, returns_sequences


class LayoutWarning(UserWarning):
    """The written file lays out its input differently from the source (time-major -> batch-major)."""


def write(model: SequenceModel, path: Path, options: WriteOptions) -> None:
    """Save ``model`` with Keras 3: ``.keras`` archive, or legacy HDF5 for ``.h5`` / ``.hdf5``."""
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise WriteError("a Keras file name must end in .keras, .h5 or .hdf5")
    check_writable(model)
    if suffix != ".keras" and any(str(a.dtype) == "bfloat16" for a in model.arrays().values()):
        raise UnsupportedError(
            "Keras 3 cannot reload bfloat16 weights from HDF5 (its legacy loader has no "
            "bfloat16 cast); write .keras instead"
        )
    if suffix != ".keras" and needs_flip(model):
        raise UnsupportedError(
            "a backward-only layer with output in time order needs a flip operation, which "
            "Keras 3 cannot reload from HDF5; write .keras instead"
        )
    keras = keras_model(model)
    if not model.batch_first and not capabilities("keras").time_major:
        warnings.warn(
            f"{path.name}: Keras models are batch-major, so this file takes (batch, time, ...) input where "
            "the source took (time, batch, ...); the computation is unchanged",
            LayoutWarning,
            stacklevel=2,
        )
    if suffix == ".keras":
        write_archive(keras, path)
    else:
        write_legacy_h5(keras, path)


def check_writable(model: SequenceModel) -> None:
    """Refuse, before writing anything, what a Keras 3 LSTM cannot compute exactly.

    What no Keras LSTM carries is refused by ``capabilities``; here, what Keras's own encoding adds:
    activations it has a name for, and backward-only layers around a mask.
    """
    check_carries(model, "keras")
    for k, layer in enumerate(model.layers):
        where = f"layer {k}"
        for d, direction in enumerate(layer.directions):
            for activation in direction.activations:
                keras3_activation(activation, f"{where} direction {d}")
        sequences = returns_sequences(model, k)
        if layer.reverse and layer.reversed_output and sequences and model.masked:
            raise UnsupportedError(
                f"{where}: a masked backward-only layer whose output is reversed over the padded length "
                "is ambiguous; lstmconvert does not write it"
            )
        if flipped(model, k) and model.masked and k < len(model.layers) - 1:
            raise UnsupportedError(
                f"{where}: a backward-only layer (output in time order) inside a masked stack needs a flip "
                "that would drop Keras's mask for the next layer"
            )
