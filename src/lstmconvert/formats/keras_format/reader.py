"""Read a Keras model file into the neutral model, without importing TensorFlow or Keras.

Supported chain: ``[InputLayer] -> [Embedding | Masking] -> LSTM / Bidirectional(LSTM) ... -> Dense /
TimeDistributed(Dense) [-> Activation | Softmax | ReLU] ...``, with inference no-ops (Dropout and
friends) anywhere and a Flatten where it changes nothing. An LSTM may also be written as
``RNN(LSTMCell)`` or tf.keras's ``CuDNNLSTM`` (see ``recurrent``); models used as layers are flattened
(see ``graph``). Everything else is refused with the layer's name and class. Kernels become
``(out, in)`` matrices (transposes, bit-exact); Keras's single LSTM bias becomes ``b_ih``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import OutsideNeutralShapeError, ReadError, UnsupportedError
from ...model import HEAD_ACTIVATIONS, MERGE_MODES, Dense, Embedding, LSTMDirection, LSTMLayer, SequenceModel
from ...options import ReadHints
from .config import activation_name, policy_name, read_activation
from .container import KerasArchive, KerasFile, open_keras_file
from .graph import LayerChain, LayerSpec, layer_chain
from .recurrent import LSTM_CLASSES, RecurrentConfig, expected_shapes, neutral_weights, recurrent_config

# Layers that compute the identity at inference.
NO_OP_CLASSES = (
    "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity",
)


def read(path: Path, hints: ReadHints) -> SequenceModel:
    """Read a ``.keras`` archive or a full-model ``.h5`` (Keras 3, tf.keras 2, Keras 2)."""
    if hints.batch_first is False:
        raise UnsupportedError("Keras models are batch-first; --seq-first does not apply")
    with open_keras_file(path) as handle:
        chain = layer_chain(handle.config)
        model = _ChainReader(handle, chain).read()
    if hints.readout is not None and hints.readout != model.readout:
        raise UnsupportedError(
            f"the file's last LSTM gives readout {model.readout!r}; --readout {hints.readout} "
            "does not apply to Keras files"
        )
    return model


class _ChainReader:
    """Walks the layer chain once, filling the neutral model's parts in order."""

    def __init__(self, handle: KerasFile, chain: LayerChain) -> None:
        self.file = handle
        self.chain = chain
        self.embedding: Optional[Embedding] = None
        self.masking: Optional[str] = None  # "embedding" or "masking": where the mask comes from
        self.mask_value = 0.0
        self.layers: list = []
        self.head: list = []
        self.readout = "sequence"
        self.input_dtype: Optional[str] = None
        self.fixed_sizes: Optional[dict] = None  # from the recorded input shape
        self.names: dict = {"embedding": None, "masking": None, "layers": [], "head": []}
        self.gpu_only: list = []  # CuDNNLSTM layers
        self.claimed: dict = {}  # HDF5 group of a nested model -> indices of its weights read so far

    # -- the walk ------------------------------------------------------------------------------
    def read(self) -> SequenceModel:
        for spec in self.chain.layers:
            self._layer(spec)
        if not self.layers:
            raise ReadError("no LSTM layer in the model")
        self._check_nested_weights_all_read()
        return SequenceModel(
            layers=self.layers,
            embedding=self.embedding,
            head=self.head,
            input_kind="tokens" if self.embedding is not None else "features",
            batch_first=True,
            readout=self.readout,
            masked=self.masking is not None,
            mask_value=self.mask_value,
            meta={**({"fixed_sizes": self.fixed_sizes} if self.fixed_sizes else {}), "keras": {
                "container": self.file.kind,
                "keras_version": self.file.keras_version,
                "model_name": self.chain.model_name,
                "input_dtype": self.input_dtype,
                "names": self.names,
                "gpu_only_layers": self.gpu_only,
            }},
        )

    def _layer(self, spec: LayerSpec) -> None:
        cls = spec.class_name
        if not self.layers and self.fixed_sizes is None:
            self._input_shape(spec.config)
        if cls in NO_OP_CLASSES:
            return
        handler = {
            "InputLayer": self._input,
            "Embedding": self._embedding,
            "Masking": self._masking,
            **{cls: self._lstm for cls in LSTM_CLASSES},
            "Bidirectional": self._bidirectional,
            "Flip": self._flip,
            "Dense": self._dense,
            "TimeDistributed": self._time_distributed,
            "Activation": self._activation,
            "Softmax": self._softmax,
            "ReLU": self._relu,
            "Flatten": self._flatten,
        }.get(cls)
        if handler is None:
            raise self._unsupported(
                spec, "is not supported; lstmconvert reads [Embedding | Masking] -> LSTM / "
                "Bidirectional(LSTM) -> Dense models", outside=True
            )
        handler(spec)

    def _unsupported(self, spec: LayerSpec, problem: str, outside: bool = False) -> UnsupportedError:
        """``outside``: the layer is one in-place widening (``edit``) can keep, outside the neutral shape."""
        if outside:
            return OutsideNeutralShapeError(f"{spec.where()} {problem}", f"{spec.class_name} '{spec.name}'")
        return UnsupportedError(f"{spec.where()} {problem}")

    # -- input side ----------------------------------------------------------------------------
    def _input_shape(self, cfg: dict) -> None:
        """The input shape an InputLayer (or, in tf.keras, the first layer) records: a batch size or
        length given there is the only one the model runs at (``meta["fixed_sizes"]``)."""
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not isinstance(shape, (list, tuple)) or len(shape) < 2:
            return
        self.fixed_sizes = {axis: int(size) for axis, size in zip(("batch", "steps"), shape[:2])
                            if isinstance(size, int) and size > 0}

    def _input(self, spec: LayerSpec) -> None:
        cfg = spec.config
        if cfg.get("sparse") or cfg.get("ragged"):
            raise self._unsupported(spec, "takes sparse or ragged tensors")
        dtype = cfg.get("dtype")
        self.input_dtype = dtype if isinstance(dtype, str) else None

    def _embedding(self, spec: LayerSpec) -> None:
        if self.embedding is not None or self.masking or self.layers:
            raise self._unsupported(spec, "must be the first layer after the input")
        cfg = spec.config
        self._refuse_extras(spec)
        dtype = policy_name(cfg, self._where(spec))
        (weight,) = self._weights(spec, [("", ["embeddings"])], dtype)
        shape = (cfg.get("input_dim"), cfg.get("output_dim"))
        if weight.ndim != 2 or (None not in shape and weight.shape != shape):
            raise ReadError(f"{self._where(spec)}: embeddings are {weight.shape}, config says {shape}")
        self._check_dtype(spec, dtype, [weight])
        self.embedding = Embedding(weight=weight)
        self.names["embedding"] = spec.name
        if cfg.get("mask_zero"):
            self.masking = "embedding"

    def _masking(self, spec: LayerSpec) -> None:
        if self.embedding is not None or self.masking or self.layers:
            raise self._unsupported(spec, "must come before the first LSTM and act on the input features")
        value = spec.config.get("mask_value", 0.0)
        if not isinstance(value, (int, float)):
            raise self._unsupported(spec, f"has mask_value {value!r}; only a number is supported")
        self.masking = "masking"
        self.mask_value = float(value)
        self.names["masking"] = spec.name

    # -- recurrent layers ----------------------------------------------------------------------
    def _before_lstm(self, spec: LayerSpec) -> None:
        if self.head:
            raise self._unsupported(spec, "follows a Dense layer; only Dense layers may follow the LSTMs", outside=True)
        if self.readout == "last":
            raise self._unsupported(spec, "follows an LSTM with return_sequences=False")
        if spec.explicit_mask and self.masking and spec.mask_kwarg != self.masking:
            raise self._unsupported(spec, "is not given the input's mask although the model masks its input")

    def _recurrent(self, spec: LayerSpec, class_name: str, config: dict, where: str) -> RecurrentConfig:
        """The layer's LSTM description, its options checked; refuse what is no LSTM."""
        rc = recurrent_config(class_name, config, where)
        if rc is None:
            raise UnsupportedError(f"{spec.where()} wraps a {class_name}; only LSTM is supported")
        _check_lstm_options(rc.config, where)
        if rc.kind == "CuDNNLSTM" and self.masking:
            raise self._unsupported(spec, "is a CuDNNLSTM in a masked model; cuDNN layers take no mask")
        return rc

    def _lstm(self, spec: LayerSpec) -> None:
        self._before_lstm(spec)
        where = self._where(spec)
        rc = self._recurrent(spec, spec.class_name, spec.config, where)
        cfg = rc.config
        arrays = self._weights(spec, [(rc.part, rc.weight_names)], policy_name(cfg, where))
        direction = self._direction(rc, arrays, spec, where)
        sequences = bool(cfg.get("return_sequences", False))
        reverse = bool(cfg.get("go_backwards", False))
        if reverse and sequences and self.masking:
            raise self._unsupported(
                spec, "runs backward (go_backwards) and returns sequences in a masked model: Keras returns "
                "that sequence reversed over the padded length, misaligned with the mask, which no other "
                "format can express"
            )
        self.layers.append(LSTMLayer([direction], reverse=reverse, reversed_output=reverse and sequences))
        self.names["layers"].append({"name": spec.name, "class": "LSTM"})
        self._note_source_class(spec, rc)
        self.readout = "sequence" if sequences else "last"

    def _bidirectional(self, spec: LayerSpec) -> None:
        self._before_lstm(spec)
        cfg = spec.config
        where = self._where(spec)
        merge = cfg.get("merge_mode", "concat")
        if merge not in MERGE_MODES:
            raise self._unsupported(spec, f"has merge_mode {merge!r}; supported: {', '.join(MERGE_MODES)}")
        forward = self._wrapped(spec, "layer")
        if cfg.get("backward_layer") is not None:
            backward = self._wrapped(spec, "backward_layer")
        else:  # tf.keras leaves it out: the backward layer is the forward config with go_backwards flipped
            backward = forward.backward()
        if forward.config.get("go_backwards") or not backward.config.get("go_backwards"):
            raise self._unsupported(spec, "wraps a forward layer that runs backward (go_backwards=True)")
        if bool(forward.config.get("return_sequences")) != bool(backward.config.get("return_sequences")):
            raise self._unsupported(spec, "has directions that disagree on return_sequences")
        fwd_names, bwd_names = forward.weight_names, backward.weight_names
        arrays = self._weights(
            spec, [(_join("forward_layer", forward.part), fwd_names), (_join("backward_layer", backward.part), bwd_names)],
            policy_name(forward.config, where) or policy_name(cfg, where),
        )
        directions = [
            self._direction(forward, arrays[: len(fwd_names)], spec, f"{where} forward"),
            self._direction(backward, arrays[len(fwd_names):], spec, f"{where} backward"),
        ]
        self.layers.append(LSTMLayer(directions, merge=merge))
        self.names["layers"].append({"name": spec.name, "class": "Bidirectional"})
        self._note_source_class(spec, forward)
        self.readout = "sequence" if forward.config.get("return_sequences") else "last"

    def _wrapped(self, spec: LayerSpec, key: str) -> RecurrentConfig:
        """The LSTM a Bidirectional wraps (``layer`` or ``backward_layer``); refuse any other layer."""
        entry = spec.config.get(key)
        if not isinstance(entry, dict) or "class_name" not in entry:
            raise ReadError(f"{spec.where()} has no readable {key!r} config")
        config = dict(entry.get("config") or {})
        return self._recurrent(spec, entry["class_name"], config, f"{self._where(spec)} ({config.get('name', key)})")

    def _note_source_class(self, spec: LayerSpec, rc: RecurrentConfig) -> None:
        """Remember layers that only a GPU runs (Keras cannot run the source file without one)."""
        if rc.kind == "CuDNNLSTM":
            self.gpu_only.append(spec.name)

    def _flip(self, spec: LayerSpec) -> None:
        """``ops.flip(x, axis=1)`` right after a go_backwards LSTM puts its output back in time order."""
        axis = spec.config.get("axis", spec.args[0] if spec.args else None)
        last = self.layers[-1] if self.layers else None
        if (axis != 1 or last is None or self.head or not last.reverse or not last.reversed_output
                or self.readout != "sequence"):
            raise self._unsupported(spec, "is only supported as flip(axis=1) right after a go_backwards LSTM")
        last.reversed_output = False

    def _direction(self, rc: RecurrentConfig, arrays: list, spec: LayerSpec, where: str) -> LSTMDirection:
        cfg = rc.config
        units = cfg.get("units")
        dtype = policy_name(cfg, where) or policy_name(spec.config, where)
        kernel, recurrent = arrays[0], arrays[1]
        hidden = recurrent.shape[0] if recurrent.ndim == 2 else -1
        expect = expected_shapes(rc.kind, kernel.shape[0] if kernel.ndim == 2 else -1, hidden)
        for name, array in zip(rc.weight_names, arrays):
            if array.shape != expect[name] or (units is not None and hidden != units):
                raise ReadError(f"{where}: {name} is {array.shape}, expected {expect[name]} for units={units}")
        self._check_dtype(spec, dtype, arrays)
        major = self.file.keras_major
        cell = read_activation(cfg.get("activation", "tanh"), major, f"{where} activation")
        gate = read_activation(cfg.get("recurrent_activation", "sigmoid"), major, f"{where} recurrent_activation")
        w_ih, w_hh, b_ih, b_hh = neutral_weights(rc.kind, arrays)
        return LSTMDirection(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, activations=(gate, cell, cell))

    # -- head ----------------------------------------------------------------------------------
    def _dense(self, spec: LayerSpec, cfg: Optional[dict] = None, parts: str = "") -> None:
        cfg = spec.config if cfg is None else cfg
        if not self.layers:
            raise self._unsupported(spec, "comes before the first LSTM; only Dense layers after the LSTMs are supported",
                                    outside=True)
        where = self._where(spec)
        self._refuse_extras(spec, cfg)
        dtype = policy_name(cfg, where)
        names = ["kernel"] + (["bias"] if cfg.get("use_bias", True) else [])
        arrays = self._weights(spec, [(parts, names)], dtype)
        kernel = arrays[0]
        bias = arrays[1] if len(arrays) > 1 else None
        units = cfg.get("units")
        if kernel.ndim != 2 or (units is not None and kernel.shape[1] != units) or (
                bias is not None and bias.shape != (kernel.shape[1],)):
            raise ReadError(f"{where}: kernel {kernel.shape} / bias {getattr(bias, 'shape', None)} do not fit units={units}")
        self._check_dtype(spec, dtype, arrays)
        activation = activation_name(cfg.get("activation", "linear"), f"{where} activation")
        if activation not in HEAD_ACTIVATIONS:
            raise self._unsupported(spec, f"has activation {activation!r}; supported: {', '.join(HEAD_ACTIVATIONS)}")
        self.head.append(Dense(weight=np.ascontiguousarray(kernel.T), bias=bias, activation=activation))
        self.names["head"].append(spec.name)

    def _time_distributed(self, spec: LayerSpec) -> None:
        inner = spec.config.get("layer") or {}
        if inner.get("class_name") != "Dense":
            raise self._unsupported(spec, f"wraps {inner.get('class_name')!r}; only TimeDistributed(Dense) is supported",
                                    outside=True)
        if self.readout != "sequence":
            raise self._unsupported(spec, "follows an LSTM that returns no sequence")
        self._dense(spec, inner.get("config") or {}, parts="layer")

    def _activation(self, spec: LayerSpec) -> None:
        """An Activation layer right after a linear Dense is that Dense's activation."""
        name = activation_name(spec.config.get("activation", "linear"), f"{self._where(spec)} activation")
        if name == "linear":
            return
        if name not in HEAD_ACTIVATIONS:
            raise self._unsupported(spec, f"applies {name!r}; supported: {', '.join(HEAD_ACTIVATIONS)}")
        self._fold(spec, name)

    def _softmax(self, spec: LayerSpec) -> None:
        """A Softmax layer over the features, right after a linear Dense, is that Dense's softmax."""
        axis = spec.config.get("axis", -1)
        rank = 2 if self.readout == "last" else 3
        if axis not in (-1, rank - 1, [-1], [rank - 1]):
            raise self._unsupported(spec, f"normalizes over axis {axis}, not over the features (axis=-1)", outside=True)
        if self.masking and self.readout == "sequence":
            raise self._unsupported(spec, "receives the sequence mask, which Keras adds into its input")
        self._fold(spec, "softmax")

    def _relu(self, spec: LayerSpec) -> None:
        """A plain ReLU layer right after a linear Dense is that Dense's relu."""
        cfg = spec.config
        if cfg.get("max_value") is not None or cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
            raise self._unsupported(spec, "has max_value, negative_slope or threshold; only a plain ReLU is supported")
        self._fold(spec, "relu")

    def _flatten(self, spec: LayerSpec) -> None:
        """Flatten of a (batch, features) output changes nothing; of a sequence, it mixes the steps."""
        if not self.layers or self.readout != "last":
            raise self._unsupported(
                spec, "flattens the time steps into one vector; only a Flatten after an LSTM with "
                "return_sequences=False (where it changes nothing) is supported", outside=True
            )

    def _fold(self, spec: LayerSpec, name: str) -> None:
        if not self.head or self.head[-1].activation != "linear":
            raise self._unsupported(
                spec, f"applies {name!r} where lstmconvert can only fold it into a preceding linear Dense layer",
                outside=True,
            )
        self.head[-1].activation = name

    # -- weights -------------------------------------------------------------------------------
    def _weights(self, spec: LayerSpec, parts: list, dtype: Optional[str]) -> list:
        """The layer's arrays in Keras's get_weights() order, checked against the expected names.

        ``parts``: (sub-path of the layer's .keras weights group, expected variable names) pairs;
        ``dtype``: the layer's declared dtype (tells untagged bfloat16 storage apart).
        """
        where = self._where(spec)
        if isinstance(self.file, KerasArchive):
            saved = self.file.saved_name(spec.store_path)
            if saved is not None and saved != spec.name:
                raise ReadError(f"{where}: weights group {spec.store_path} belongs to layer {saved!r}")
            arrays = []
            for part, names in parts:
                group = f"{spec.store_path}/{part}" if part else spec.store_path
                found = self.file.vars(group, where, dtype)
                if len(found) != len(names):
                    raise ReadError(
                        f"{where}: {group} holds {len(found)} variables, expected {len(names)} ({', '.join(names)})"
                    )
                arrays.extend(found)
            if any(part for part, _ in parts) and self.file.vars(spec.store_path, where):
                raise ReadError(f"{where}: unexpected variables in {spec.store_path}/vars")
            return arrays
        expected = [n for _, names in parts for n in names]
        group = spec.h5_group or spec.name
        listed = self.file.weight_names(group, where)
        if spec.h5_group is None:
            mine = list(range(len(listed)))
        else:
            mine = self._claim_nested(spec, listed, where)
        stored = [_base_name(listed[i]) for i in mine]
        if stored != expected:
            raise ReadError(f"{where}: stored weights {stored}, expected {expected}")
        return [self.file.weight(group, listed[i], where, dtype) for i in mine]

    def _claim_nested(self, spec: LayerSpec, listed: list, where: str) -> list:
        """The positions of a nested model's layer's weights in the model's HDF5 group.

        Keras loads a nested model's weights by position in its trainable-then-frozen order, which the
        file does not record; every Keras names each weight with its layer's name as a path part, so
        the weights are found by name (and each must belong to exactly one layer).
        """
        group = spec.h5_group
        mine = [i for i, name in enumerate(listed) if f"/{spec.name}/" in f"/{name}"]
        claimed = self.claimed.setdefault(group, set())
        if claimed.intersection(mine):
            raise ReadError(f"{where}: weights of model_weights/{group} match more than one layer by name")
        claimed.update(mine)
        return mine

    def _check_nested_weights_all_read(self) -> None:
        for group, claimed in self.claimed.items():
            listed = self.file.weight_names(group, f"model '{group}'")
            left = [name for i, name in enumerate(listed) if i not in claimed]
            if left:
                raise ReadError(f"model_weights/{group} holds weights of no layer read: {', '.join(left[:3])}")

    def _check_dtype(self, spec: LayerSpec, dtype: Optional[str], arrays: list) -> None:
        kinds = {str(a.dtype) for a in arrays}
        if len(kinds) != 1 or (dtype is not None and kinds != {dtype}):
            raise ReadError(f"{self._where(spec)}: weights stored as {sorted(kinds)} but the layer dtype is {dtype}")

    def _refuse_extras(self, spec: LayerSpec, cfg: Optional[dict] = None) -> None:
        cfg = spec.config if cfg is None else cfg
        if cfg.get("lora_rank") or cfg.get("lora_enabled"):
            raise self._unsupported(spec, "has LoRA weights")
        if cfg.get("quantization_config"):
            raise self._unsupported(spec, "is quantized")

    def _where(self, spec: LayerSpec) -> str:
        return spec.where()


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _base_name(weight_name: str) -> str:
    """``sequential/lstm/lstm_cell/kernel`` or ``lstm/lstm_cell/kernel:0`` -> ``kernel``."""
    return weight_name.split("/")[-1].split(":")[0]


def _check_lstm_options(cfg: dict, where: str) -> None:
    """Refuse the LSTM options that change the computation in ways the neutral model cannot hold."""
    if cfg.get("return_state"):
        raise UnsupportedError(f"{where}: return_state=True (several outputs) is not supported")
    if cfg.get("stateful"):
        raise UnsupportedError(f"{where}: stateful=True carries state across batches; not supported")
    if cfg.get("time_major"):
        raise UnsupportedError(f"{where}: time_major=True is not supported (Keras models are batch-first)")
