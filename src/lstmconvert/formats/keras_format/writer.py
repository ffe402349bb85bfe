"""Write the neutral model as a Keras 3 model: ``.keras`` archive or full-model ``.h5``.

The model is built with Keras's own layers (a Functional chain ``Input -> [Embedding | Masking] ->
LSTM / Bidirectional(LSTM) ... -> Dense ...``), its weights set with ``set_weights``, and saved with
Keras's own saver, so ``keras.saving.load_model(path, safe_mode=True)`` opens it: no Lambda layer, no
custom object.

Keras models are batch-major. A time-major source (``batch_first=False``) is written as the same
network taking ``(batch, time, ...)`` input; a LayoutWarning says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from ...capabilities import capabilities, check_carries
from ...errors import UnsupportedError, WriteError
from ...model import LSTMDirection, LSTMLayer, SequenceModel
from ...options import WriteOptions
from .archive_writer import save_archive
from .config import keras3_activation
from .frameworks import import_keras


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
    if suffix != ".keras" and _needs_flip(model):
        raise UnsupportedError(
            "a backward-only layer with output in time order needs a flip operation, which "
            "Keras 3 cannot reload from HDF5; write .keras instead"
        )
    keras_model, stack = build_keras_skeleton(model)
    if not model.batch_first and not capabilities("keras").time_major:
        warnings.warn(
            f"{path.name}: Keras models are batch-major, so this file takes (batch, time, ...) input where "
            "the source took (time, batch, ...); the computation is unchanged",
            LayoutWarning,
            stacklevel=2,
        )
    if suffix == ".keras" and save_archive(keras_model, _values_by_variable(stack), path):
        return
    _set_weights(stack)
    keras_model.save(str(path))


def check_writable(model: SequenceModel) -> None:
    """Refuse, before importing Keras, what a Keras 3 LSTM cannot compute exactly.

    What no Keras LSTM carries is refused by ``capabilities``; here, what Keras's own encoding adds:
    activations it has a name for, and backward-only layers around a mask.
    """
    check_carries(model, "keras")
    for k, layer in enumerate(model.layers):
        where = f"layer {k}"
        for d, direction in enumerate(layer.directions):
            for activation in direction.activations:
                keras3_activation(activation, f"{where} direction {d}")
        sequences = _returns_sequences(model, k)
        if layer.reverse and layer.reversed_output and sequences and model.masked:
            raise UnsupportedError(
                f"{where}: a masked backward-only layer whose output is reversed over the padded length "
                "is ambiguous; lstmconvert does not write it"
            )
        if _flipped(model, k) and model.masked and k < len(model.layers) - 1:
            raise UnsupportedError(
                f"{where}: a backward-only layer (output in time order) inside a masked stack needs a flip "
                "that would drop Keras's mask for the next layer"
            )


def build_keras_model(model: SequenceModel):
    """The Keras 3 model computing ``model``, weights set."""
    keras_model, stack = build_keras_skeleton(model)
    _set_weights(stack)
    return keras_model


def _set_weights(stack: list) -> None:
    for item, weights in stack:
        if weights is not None:
            item.set_weights(weights)


def _values_by_variable(stack: list) -> dict:
    """{id(Keras variable): the array it should hold}, in each layer's ``weights`` order (set_weights')."""
    values = {}
    for item, weights in stack:
        if weights is None:
            continue
        if len(item.weights) != len(weights):
            raise WriteError(item.name, f"Keras built {len(item.weights)} weights, lstmconvert has {len(weights)}")
        for variable, array in zip(item.weights, weights):
            if tuple(variable.shape) != tuple(array.shape):
                raise WriteError(item.name, f"Keras variable {variable.path} has shape {tuple(variable.shape)}, "
                                            f"the array {tuple(array.shape)}")
            values[id(variable)] = array
    return values


def build_keras_skeleton(model: SequenceModel) -> tuple:
    """The Keras 3 model computing ``model``, its variables not yet set (zeros), and the layer stack:
    [(Keras layer, the arrays its ``weights`` should hold, or None)].

    A Sequential model unless a backward-only layer must be flipped back into time order: Keras 3
    cannot reload a Functional model's mask or flip operations from HDF5, a Sequential one it can.
    """
    keras = import_keras()
    layers = keras.layers
    names = _Names(model)
    dtype = str(model.dtype)
    stack = []  # (keras layer, weights to set after building, or None)

    if model.input_kind == "tokens":
        stack.append((keras.Input(shape=(None,), dtype=_token_dtype(model), name=names.input()), None))
        embedding = layers.Embedding(
            model.embedding.vocab_size, model.embedding.dim, mask_zero=model.masked,
            dtype=str(model.embedding.weight.dtype), name=names.embedding(),
            embeddings_initializer="zeros",  # overwritten; the default is put back before saving
        )
        stack.append((embedding, [model.embedding.weight]))
    else:
        stack.append((keras.Input(shape=(None, model.input_size), dtype=dtype, name=names.input()), None))
        if model.masked:
            stack.append((layers.Masking(mask_value=model.mask_value, dtype=dtype, name=names.masking()), None))

    for k, layer in enumerate(model.layers):
        sequences = _returns_sequences(model, k)
        stack.append(_recurrent_layer(keras, layer, sequences, dtype, names, k))
        if _flipped(model, k):
            # go_backwards returns the sequence reversed in time; flip it back into time order.
            stack.append((_FLIP, None))

    for j, dense in enumerate(model.head):
        keras_dense = layers.Dense(
            dense.out_features, activation=dense.activation, use_bias=dense.bias is not None,
            dtype=str(dense.weight.dtype), name=names.head(j),
        )
        stack.append((keras_dense, [dense.weight.T] + ([dense.bias] if dense.bias is not None else [])))

    if any(item is _FLIP for item, _ in stack):
        inputs = x = stack[0][0]
        for item, _ in stack[1:]:
            x = keras.ops.flip(x, axis=1) if item is _FLIP else item(x)
        keras_model = keras.Model(inputs, x, name=names.model())
    else:
        keras_model = keras.Sequential([item for item, _ in stack], name=names.model())
    _restore_default_initializers(keras, keras_model, dtype)
    return keras_model, stack


def _restore_default_initializers(keras, keras_model, dtype: str) -> None:
    """Give the LSTM cells Keras's default initializers back, so the saved config is the usual one.

    bfloat16 keeps the zeros recurrent initializer: Keras runs initializers when it loads a file,
    and TensorFlow's QR has no bfloat16 kernel.
    """
    for layer in keras_model.layers:
        if hasattr(layer, "embeddings_initializer"):
            layer.embeddings_initializer = keras.initializers.get("uniform")
        wrapped = [layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") else [layer]
        for lstm in wrapped:
            if hasattr(lstm, "cell") and hasattr(lstm.cell, "recurrent_initializer"):
                lstm.cell.kernel_initializer = keras.initializers.get("glorot_uniform")
                if dtype != "bfloat16":
                    lstm.cell.recurrent_initializer = keras.initializers.get("orthogonal")


_FLIP = object()  # marks where keras.ops.flip(x, axis=1) goes in the layer stack


def _returns_sequences(model: SequenceModel, k: int) -> bool:
    return k < len(model.layers) - 1 or model.readout == "sequence"


def _flipped(model: SequenceModel, k: int) -> bool:
    """A backward-only layer whose output the model wants in time order (Keras reverses it)."""
    layer = model.layers[k]
    return layer.reverse and not layer.reversed_output and _returns_sequences(model, k)


def _needs_flip(model: SequenceModel) -> bool:
    return any(_flipped(model, k) for k in range(len(model.layers)))


def _recurrent_layer(keras, layer: LSTMLayer, sequences: bool, dtype: str, names: "_Names", k: int):
    """A Keras LSTM or Bidirectional(LSTM) for one neutral layer, and its get_weights() list."""
    use_bias = any(d.has_bias for d in layer.directions)

    def lstm(direction: LSTMDirection, name: str, go_backwards: bool):
        gate, cell, _ = direction.activations
        return keras.layers.LSTM(
            direction.hidden_size,
            activation=keras3_activation(cell, f"layer {k}"),
            recurrent_activation=keras3_activation(gate, f"layer {k}"),
            use_bias=use_bias,
            return_sequences=sequences,
            go_backwards=go_backwards,
            dtype=dtype,
            name=name,
            # set_weights overwrites the initial values, so they are zeros: the default Orthogonal
            # initializer runs a QR of every (4H, H) recurrent kernel (tens of seconds at H=2048)
            # and has no bfloat16 kernel. The defaults are put back before saving.
            kernel_initializer="zeros", recurrent_initializer="zeros",
        )

    weights = [w for d in layer.directions for w in _lstm_weights(d, use_bias)]
    if not layer.bidirectional:
        return lstm(layer.directions[0], names.lstm(k), layer.reverse), weights
    forward, backward = layer.directions
    inner = names.inner(k)
    backward_layer = None
    if forward.activations != backward.activations:
        backward_layer = lstm(backward, f"backward_{inner}", True)
    wrapper = keras.layers.Bidirectional(
        lstm(forward, inner, False), merge_mode=layer.merge, backward_layer=backward_layer,
        dtype=dtype, name=names.bidirectional(k),
    )
    return wrapper, weights


def _lstm_weights(direction: LSTMDirection, use_bias: bool) -> list:
    """kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) = b_ih + b_hh (exact if one is absent)."""
    out = [direction.w_ih.T, direction.w_hh.T]
    if use_bias:
        bias = direction.bias_sum()
        out.append(bias if bias is not None else np.zeros(direction.w_ih.shape[0], direction.w_ih.dtype))
    return out


def _token_dtype(model: SequenceModel) -> str:
    """Token ids: keep the source's integer dtype when it had one, else int64."""
    source = (model.meta.get("keras") or {}).get("input_dtype")
    return source if isinstance(source, str) and source.startswith(("int", "uint")) else "int64"


class _Names:
    """Layer names: the source Keras file's where they still fit, else fixed ones, never clashing.

    Fixed names keep what is written independent of Keras's global name counters.
    """

    def __init__(self, model: SequenceModel) -> None:
        meta = model.meta.get("keras") or {}
        self._source = meta.get("names") or {}
        self._model_name = meta.get("model_name")
        self._used: set = set()
        self._layers = model.layers

    def _take(self, preferred: Optional[str], fallback: str) -> str:
        if isinstance(preferred, str):
            # tf.keras allowed "/" in layer names (scopes); Keras 3 rejects it.
            preferred = preferred.replace("/", "_")
        for candidate in (preferred, fallback):
            if isinstance(candidate, str) and candidate and candidate not in self._used:
                self._used.add(candidate)
                return candidate
        k = 1
        while f"{fallback}_{k}" in self._used:
            k += 1
        self._used.add(f"{fallback}_{k}")
        return f"{fallback}_{k}"

    def _source_layer(self, k: int, cls: str) -> Optional[str]:
        entries = self._source.get("layers") or []
        if k < len(entries) and isinstance(entries[k], dict) and entries[k].get("class") == cls:
            return entries[k].get("name")
        return None

    def model(self) -> str:
        return self._take(self._model_name, "sequence_model")

    def input(self) -> str:
        return self._take(None, "input")

    def embedding(self) -> str:
        return self._take(self._source.get("embedding"), "embedding")

    def masking(self) -> str:
        return self._take(self._source.get("masking"), "masking")

    def lstm(self, k: int) -> str:
        return self._take(self._source_layer(k, "LSTM"), f"lstm_{k}")

    def bidirectional(self, k: int) -> str:
        return self._take(self._source_layer(k, "Bidirectional"), f"bidirectional_{k}")

    def inner(self, k: int) -> str:
        # Keras names the wrapped layers forward_<name> / backward_<name>.
        return self._take(None, f"lstm_{k}")

    def head(self, j: int) -> str:
        heads = self._source.get("head") or []
        return self._take(heads[j] if j < len(heads) else None, f"dense_{j}")
