"""The Keras 3 model that computes a neutral model, described as Keras's savers lay it out.

``keras_model(model)`` gives the model config (the JSON Keras keeps in ``config.json``) and, for each
layer, its variables in Keras's order with the places Keras's two savers put them, so ``file_writer``
can write a ``.keras`` archive or a legacy ``.h5`` file with json, zipfile and h5py alone: no Keras
variable is built and TensorFlow is never imported. ``keras.saving.load_model(path, safe_mode=True)``
rebuilds the model from the config (no Lambda layer, no custom object) and loads the variables.

The model is ``Input -> [Embedding | Masking] -> LSTM / Bidirectional(LSTM) ... -> Dense ...``: a
Sequential model, unless a backward-only layer's output must be flipped back into time order, which
needs a Functional model with ``keras.ops.flip`` (Keras reverses a ``go_backwards`` layer's output).

Layer configs hold what differs from Keras's defaults and what the computation depends on; Keras
fills in the rest when it loads, as it does for the files it writes itself. Initialisers are left at
Keras's defaults (they only matter for training from scratch), except that bfloat16 LSTMs name the
zeros recurrent initialiser: Keras runs initialisers while loading, and TensorFlow's QR (behind the
default Orthogonal) has no bfloat16 kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...model import LSTMDirection, LSTMLayer, SequenceModel
from .config import keras3_activation
from .graph import store_paths

LSTM_CELL = "lstm_cell"  # the name Keras 3 gives every LSTM's cell (its variables live under it)


@dataclass
class VariableGroup:
    """One ``vars`` group of a ``.keras`` weights file.

    ``path`` is relative to the layer's group ("" for the layer's own, "cell", "forward_layer/cell"),
    ``owner`` the name Keras records beside it, ``variables`` [(name, array)] in Keras's order (the
    datasets ``0``, ``1``, ...), each name as a legacy ``.h5`` spells it below ``<model>/<layer>/``.
    """

    path: str
    owner: str
    variables: list = field(default_factory=list)


@dataclass
class KerasLayer:
    """One layer of the model: its serialized form and its variables."""

    class_name: str
    name: str
    config: dict
    out_shape: list
    build_shape: Optional[list] = None
    groups: list = field(default_factory=list)  # [VariableGroup]
    inbound: Optional[dict] = None  # Functional models: the tensor this layer is called on
    module: str = "keras.layers"
    registered_name: Optional[str] = None

    @property
    def variables(self) -> list:
        """[(name, array)] in the order Keras's legacy loader assigns them."""
        return [v for group in self.groups for v in group.variables]

    def serialized(self, functional: bool) -> dict:
        """The layer's entry in a ``.keras`` config's layer list."""
        entry = {"module": self.module, "class_name": self.class_name, "config": self.config,
                 "registered_name": self.registered_name}
        if self.build_shape is not None:
            entry["build_config"] = {"input_shape": self.build_shape}
        if functional:
            entry["name"] = self.name
            entry["inbound_nodes"] = [] if self.inbound is None else [{"args": [self.inbound], "kwargs": {}}]
        return entry


@dataclass
class KerasModel:
    """The whole model: its name, layers (the input layer first) and whether it is Functional."""

    name: str
    layers: list  # [KerasLayer]
    functional: bool
    input_shape: list

    @property
    def weighted_layers(self) -> list:
        """The layers Keras's savers walk, in order (the input layer and flip operations are not among them)."""
        return [layer for layer in self.layers if layer.class_name not in ("InputLayer", "Flip")]

    def store_paths(self) -> list:
        """[(layer, ``layers/<snake_case class>[_k]``)]: where a ``.keras`` weights file keeps each layer."""
        layers = self.weighted_layers
        return list(zip(layers, store_paths([layer.class_name for layer in layers])))

    def config(self) -> dict:
        """``config.json`` of a ``.keras`` archive."""
        layers = [layer.serialized(self.functional) for layer in self.layers]
        if self.functional:
            return {"module": "keras.src.models.functional", "class_name": "Functional",
                    "config": {"name": self.name, "trainable": True, "layers": layers,
                               "input_layers": [self.layers[0].name, 0, 0],
                               "output_layers": [self.layers[-1].name, 0, 0]},
                    "registered_name": "Functional", "build_config": {"input_shape": None}}
        return {"module": "keras", "class_name": "Sequential",
                "config": {"name": self.name, "trainable": True, "layers": layers,
                           "build_input_shape": self.input_shape},
                "registered_name": None, "build_config": {"input_shape": self.input_shape}}

    def legacy_config(self) -> dict:
        """The ``model_config`` attribute of a legacy ``.h5`` file (Sequential only: see ``writer``)."""
        layers = [{"class_name": layer.class_name, "config": layer.config} for layer in self.layers]
        return {"class_name": "Sequential",
                "config": {"name": self.name, "trainable": True, "layers": layers,
                           "build_input_shape": self.input_shape}}


def keras_model(model: SequenceModel) -> KerasModel:
    """The Keras 3 model computing ``model`` (its configs, and its variables as numpy arrays)."""
    names = _Names(model)
    dtype = str(model.dtype)
    width = None if model.input_kind == "tokens" else model.input_size
    input_shape = [None, None] if width is None else [None, None, width]
    input_dtype = _token_dtype(model) if width is None else dtype
    name = names.input()
    layers = [KerasLayer("InputLayer", name, {"batch_shape": input_shape, "dtype": input_dtype, "sparse": False,
                                              "name": name}, input_shape)]

    def add(layer: KerasLayer) -> None:
        previous = layers[-1]
        layer.inbound = {"class_name": "__keras_tensor__",
                         "config": {"shape": previous.out_shape, "dtype": _output_dtype(layers),
                                    "keras_history": [previous.name, 0, 0]}}
        layers.append(layer)

    if model.input_kind == "tokens":
        weight = model.embedding.weight
        name = names.embedding()
        add(KerasLayer("Embedding", name, {
            "name": name, "trainable": True, "dtype": str(weight.dtype), "input_dim": int(weight.shape[0]),
            "output_dim": int(weight.shape[1]), "mask_zero": bool(model.masked)},
            [None, None, int(weight.shape[1])], build_shape=input_shape,
            groups=[VariableGroup("", name, [("embeddings", weight)])]))
    elif model.masked:
        name = names.masking()
        add(KerasLayer("Masking", name, {"name": name, "trainable": True, "dtype": dtype,
                                         "mask_value": float(model.mask_value)},
                       input_shape, groups=[VariableGroup("", name)]))

    for k, layer in enumerate(model.layers):
        add(_recurrent_layer(layer, layers[-1].out_shape, returns_sequences(model, k), dtype, names, k))
        if flipped(model, k):
            # go_backwards returns the sequence reversed in time; flip it back into time order.
            name = names.flip()
            add(KerasLayer("Flip", name, {"name": name, "axis": 1}, layers[-1].out_shape,
                           module="keras.src.ops.numpy", registered_name="Flip"))

    for j, dense in enumerate(model.head):
        name = names.head(j)
        shape_in = layers[-1].out_shape
        variables = [("kernel", dense.weight.T)] + ([("bias", dense.bias)] if dense.bias is not None else [])
        add(KerasLayer("Dense", name, {
            "name": name, "trainable": True, "dtype": str(dense.weight.dtype), "units": int(dense.out_features),
            "activation": dense.activation, "use_bias": dense.bias is not None},
            shape_in[:-1] + [int(dense.out_features)], build_shape=shape_in,
            groups=[VariableGroup("", name, variables)]))

    functional = any(layer.class_name == "Flip" for layer in layers)
    return KerasModel(names.model(), layers, functional, input_shape)


def returns_sequences(model: SequenceModel, k: int) -> bool:
    return k < len(model.layers) - 1 or model.readout == "sequence"


def flipped(model: SequenceModel, k: int) -> bool:
    """A backward-only layer whose output the model wants in time order (Keras reverses it)."""
    layer = model.layers[k]
    return layer.reverse and not layer.reversed_output and returns_sequences(model, k)


def needs_flip(model: SequenceModel) -> bool:
    return any(flipped(model, k) for k in range(len(model.layers)))


def _recurrent_layer(layer: LSTMLayer, shape_in: list, sequences: bool, dtype: str, names: "_Names",
                     k: int) -> KerasLayer:
    """A Keras LSTM or Bidirectional(LSTM) for one neutral layer."""
    out_shape = [None, None, layer.output_size] if sequences else [None, layer.output_size]
    use_bias = any(d.has_bias for d in layer.directions)

    def lstm_config(direction: LSTMDirection, name: str, go_backwards: bool) -> dict:
        gate, cell, _ = direction.activations
        config = {"name": name, "trainable": True, "dtype": dtype, "return_sequences": sequences,
                  "go_backwards": go_backwards, "units": direction.hidden_size,
                  "activation": keras3_activation(cell, f"layer {k}"),
                  "recurrent_activation": keras3_activation(gate, f"layer {k}"), "use_bias": use_bias}
        if dtype == "bfloat16":
            config["recurrent_initializer"] = "zeros"
        return config

    def cell(direction: LSTMDirection, prefix: str, path: str) -> VariableGroup:
        variables = zip(("kernel", "recurrent_kernel", "bias"), _lstm_arrays(direction, use_bias))
        return VariableGroup(path, LSTM_CELL, [(f"{prefix}{LSTM_CELL}/{name}", array) for name, array in variables])

    if not layer.bidirectional:
        name = names.lstm(k)
        return KerasLayer("LSTM", name, lstm_config(layer.directions[0], name, layer.reverse), out_shape,
                          build_shape=shape_in, groups=[cell(layer.directions[0], "", "cell"), VariableGroup("", name)])
    forward, backward = layer.directions
    name, inner = names.bidirectional(k), names.inner(k)
    # Keras names the wrapped layers forward_<name> / backward_<name> and records those names.
    forward_name, backward_name = f"forward_{inner}", f"backward_{inner}"
    config = {"name": name, "trainable": True, "dtype": dtype, "merge_mode": layer.merge,
              "layer": _nested("LSTM", lstm_config(forward, forward_name, False)),
              "backward_layer": _nested("LSTM", lstm_config(backward, backward_name, True))}
    # Forward first: the order Keras's legacy loader assigns the variables in.
    groups = [cell(forward, f"{forward_name}/", "forward_layer/cell"), VariableGroup("forward_layer", forward_name),
              cell(backward, f"{backward_name}/", "backward_layer/cell"),
              VariableGroup("backward_layer", backward_name), VariableGroup("", name)]
    return KerasLayer("Bidirectional", name, config, out_shape, build_shape=shape_in, groups=groups)


def _lstm_arrays(direction: LSTMDirection, use_bias: bool) -> list:
    """kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) = b_ih + b_hh (exact if one is absent).

    Keras's gate order (i, f, c, o) is the neutral model's, so only the matrices turn around.
    """
    out = [direction.w_ih.T, direction.w_hh.T]
    if use_bias:
        bias = direction.bias_sum()
        out.append(bias if bias is not None else np.zeros(direction.w_ih.shape[0], direction.w_ih.dtype))
    return out


def _nested(class_name: str, config: dict) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None}


def _output_dtype(layers: list) -> str:
    """The dtype of the last layer's output (a flip passes its input's through)."""
    return next(layer.config["dtype"] for layer in reversed(layers) if "dtype" in layer.config)


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
        return self._take(None, f"lstm_{k}")

    def flip(self) -> str:
        return self._take(None, "flip")

    def head(self, j: int) -> str:
        heads = self._source.get("head") or []
        return self._take(heads[j] if j < len(heads) else None, f"dense_{j}")
