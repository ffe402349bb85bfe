"""The Keras layers that hold one LSTM, reduced to one description, and their weights in neutral form.

Three layer classes compute an LSTM:

* ``LSTM``: kernel ``(I, 4H)``, recurrent_kernel ``(H, 4H)``, optional bias ``(4H,)``, gates i, f, c, o.
* ``RNN(LSTMCell(...))``: the same cell and weights, its options split between the RNN wrapper
  (return_sequences, go_backwards...) and the cell (units, activations, use_bias).
* ``CuDNNLSTM`` (Keras 2 / tf.keras ``tf.compat.v1.keras.layers.CuDNNLSTM``): fixed sigmoid/tanh, an
  ``(8H,)`` bias (input biases, then recurrent biases) and kernels handed to cuDNN as raw buffers:
  each gate's ``(I, H)`` block of the kernel is read by cuDNN as a row-major ``(H, I)`` matrix, and
  each ``(H, H)`` block of the recurrent kernel as the ``(H, H)`` matrix it is. This is how tf.keras's
  own loader converts such weights for an ``LSTM`` (``_convert_rnn_weights``), checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...errors import UnsupportedError

LSTM_CLASSES = ("LSTM", "RNN", "CuDNNLSTM")

# Options of the RNN wrapper; everything else comes from the cell.
_RNN_OPTIONS = (
    "name", "return_sequences", "return_state", "go_backwards", "stateful", "unroll", "time_major",
    "zero_output_for_mask",
)


@dataclass
class RecurrentConfig:
    """One LSTM-computing layer: its merged options, and where and how its variables are stored."""

    kind: str  # "LSTM", "RNN" (with an LSTMCell) or "CuDNNLSTM"
    config: dict  # LSTM-style options: units, activation, recurrent_activation, use_bias, ...
    part: str  # sub-path of the layer's .keras weights group holding the variables ("cell" or "")

    @property
    def weight_names(self) -> list:
        """The variables, in Keras's get_weights() order."""
        with_bias = self.kind == "CuDNNLSTM" or self.config.get("use_bias", True)
        return ["kernel", "recurrent_kernel"] + (["bias"] if with_bias else [])

    def backward(self) -> "RecurrentConfig":
        """What Bidirectional builds when it has no explicit backward_layer: go_backwards flipped."""
        flipped = {**self.config, "go_backwards": not self.config.get("go_backwards", False)}
        return RecurrentConfig(self.kind, flipped, self.part)


def recurrent_config(class_name: str, config: dict, where: str) -> Optional[RecurrentConfig]:
    """The RecurrentConfig of a layer, None if it is no LSTM; refuse RNNs of other or several cells."""
    if class_name == "LSTM":
        return RecurrentConfig("LSTM", dict(config), "cell")
    if class_name == "CuDNNLSTM":
        # cuDNN's LSTM has fixed activations and always both biases.
        fixed = {**config, "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True}
        return RecurrentConfig("CuDNNLSTM", fixed, "")
    if class_name != "RNN":
        return None
    cell = config.get("cell")
    if isinstance(cell, list) or (isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells"):
        raise UnsupportedError(
            f"{where}: an RNN over several cells (StackedRNNCells) is not supported; use one LSTM layer per cell"
        )
    cell_class = cell.get("class_name") if isinstance(cell, dict) else None
    if cell_class != "LSTMCell":
        raise UnsupportedError(f"{where}: an RNN over a {cell_class or 'unreadable'} cell; only LSTMCell is supported")
    cell_config = cell.get("config") or {}
    merged = {**cell_config, **{k: config[k] for k in _RNN_OPTIONS if k in config}}
    if "dtype" not in cell_config and "dtype" in config:
        merged["dtype"] = config["dtype"]
    return RecurrentConfig("RNN", merged, "cell")


def neutral_weights(kind: str, arrays: list) -> tuple:
    """``(w_ih (4H, I), w_hh (4H, H), b_ih, b_hh)`` from a layer's kernel, recurrent kernel and bias.

    Shapes must have been checked (see ``expected_shapes``). Every value is copied bit-exactly.
    """
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else None
    if kind != "CuDNNLSTM":
        return np.ascontiguousarray(kernel.T), np.ascontiguousarray(recurrent.T), bias, None
    hidden = recurrent.shape[0]
    inputs = kernel.shape[0]
    w_ih = np.concatenate([
        np.ascontiguousarray(kernel[:, g * hidden:(g + 1) * hidden]).reshape(hidden, inputs) for g in range(4)
    ])
    w_hh = np.concatenate([recurrent[:, g * hidden:(g + 1) * hidden] for g in range(4)])
    return w_ih, np.ascontiguousarray(w_hh), bias[: 4 * hidden], bias[4 * hidden:]


def expected_shapes(kind: str, inputs: int, hidden: int) -> dict:
    """The stored shape of each variable for ``inputs`` features and ``hidden`` units."""
    bias = 8 * hidden if kind == "CuDNNLSTM" else 4 * hidden
    return {"kernel": (inputs, 4 * hidden), "recurrent_kernel": (hidden, 4 * hidden), "bias": (bias,)}
