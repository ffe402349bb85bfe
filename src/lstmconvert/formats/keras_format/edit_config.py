"""Rewrite a Keras model config for in-place widening: each chosen LSTM becomes a Bidirectional.

The edited config is the source's own, changed only where widening must change it: the LSTM entries
are wrapped (same name, same inbound calls, the old LSTM config as the forward layer; Keras derives
the backward layer from it with ``go_backwards=True``), and the ``build_config`` of every layer whose
input width changes is dropped so Keras builds it for the new width. A tf.keras / Keras 2 config is
brought to what Keras 3 rebuilds: its always-False ``time_major`` is removed, and options whose meaning
differs between the two are refused.
"""

from __future__ import annotations

import copy

from ...errors import UnsupportedError
from .edit_graph import Plan, _entry_name

# Config values that Keras 3 reads with another meaning than tf.keras / Keras 2 did.
_CHANGED_MEANING = {
    "hard_sigmoid": "clip(0.2x+0.5) in Keras 2 but clip(x/6+0.5) in Keras 3",
    "gelu": "exact in tf.keras but the tanh approximation by default in Keras 3",
}


def refuse_code(value: object) -> None:
    """Refuse a config holding a Lambda layer or a lambda function: loading it would run its bytecode."""
    if isinstance(value, dict):
        if value.get("class_name") in ("Lambda", "__lambda__"):
            raise UnsupportedError("the model holds a Python lambda stored as bytecode; lstmconvert never "
                                   "runs code from a file")
        for item in value.values():
            refuse_code(item)
    elif isinstance(value, list):
        for item in value:
            refuse_code(item)


def for_keras3(value: object) -> object:
    """A copy of a tf.keras / Keras 2 config that Keras 3 rebuilds with the same meaning."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "time_major":
                if item:
                    raise UnsupportedError("a layer has time_major=True, which Keras 3 cannot express")
                continue
            if key in ("activation", "recurrent_activation") and isinstance(item, str) and item in _CHANGED_MEANING:
                raise UnsupportedError(f"activation {item!r} is {_CHANGED_MEANING[item]}; lstmconvert writes "
                                       "Keras 3 files and cannot keep its meaning")
            out[key] = for_keras3(item)
        return out
    if isinstance(value, list):
        return [for_keras3(item) for item in value]
    return value


def edited_config(model_config: dict, plan: Plan, merge: str) -> dict:
    """The model config with ``plan``'s LSTMs wrapped in Bidirectional and rebuilt widths left to Keras."""
    config = copy.deepcopy(model_config)
    config.pop("compile_config", None)  # the optimizer's slots no longer fit the widened weights
    changed = set(plan.lstms) | set(plan.consumers) | set(plan.through)
    layers = config["config"]["layers"]
    for k, entry in enumerate(layers):
        name = _entry_name(entry)
        if name in changed:
            _drop_build_configs(entry)
        if name in plan.lstms:
            layers[k] = _bidirectional(entry, name, merge)
    return config


def _drop_build_configs(value: object) -> None:
    """Forget recorded input shapes, also of wrapped layers (TimeDistributed's, Bidirectional's)."""
    if isinstance(value, dict):
        value.pop("build_config", None)
        for item in value.values():
            _drop_build_configs(item)
    elif isinstance(value, list):
        for item in value:
            _drop_build_configs(item)


def _bidirectional(entry: dict, name: str, merge: str) -> dict:
    """A Bidirectional entry in the same dialect as ``entry`` (Keras 3 entries carry a module)."""
    # Keras 3 deserializes the wrapped layer with its new loader, which needs the module even in a
    # Keras 2 style config.
    lstm = {"module": "keras.layers", "class_name": entry["class_name"], "config": entry["config"],
            "registered_name": entry.get("registered_name")}
    lstm_config = lstm["config"]
    wrapper = {"name": name, "trainable": lstm_config.get("trainable", True), "merge_mode": merge, "layer": lstm}
    if "dtype" in lstm_config:
        wrapper["dtype"] = lstm_config["dtype"]
    out = {"class_name": "Bidirectional", "config": wrapper}
    if "module" in entry:
        out.update(module="keras.layers", registered_name=None)
    for key in ("name", "inbound_nodes"):
        if key in entry:
            out[key] = entry[key]
    return out


_RECURRENT = ("LSTM", "GRU", "SimpleRNN")
_ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def recurrent_initializers(model_config: dict) -> dict:
    """``{top-level layer name: {"layer": ..., "backward_layer": ...}}``: the recurrent initializers of
    the top-level recurrent layers (a plain one under "layer"), as configured."""
    found = {}
    for entry in model_config["config"]["layers"]:
        for key, inner in _recurrent_configs(entry):
            found.setdefault(_entry_name(entry), {})[key] = inner.get("recurrent_initializer")
    return found


def without_recurrent_initializers(model_config: dict) -> dict:
    """A copy whose top-level recurrent layers build with zero recurrent kernels.

    Keras runs every initializer when it builds a model, and the default Orthogonal one costs a QR of
    each (4H, H) kernel (a minute at H=2048); the weights are overwritten anyway. The editor puts the
    configured initializers back before saving (``recurrent_initializers``).
    """
    config = copy.deepcopy(model_config)
    for entry in config["config"]["layers"]:
        for _, inner in _recurrent_configs(entry):
            if "recurrent_initializer" in inner:
                inner["recurrent_initializer"] = dict(_ZEROS)
    return config


def _recurrent_configs(entry: dict) -> list:
    """(key, config) of the recurrent layers an entry is or wraps: "layer" (or the entry itself), "backward_layer"."""
    config = entry.get("config") or {}
    if entry.get("class_name") in _RECURRENT:
        return [("layer", config)]
    if entry.get("class_name") != "Bidirectional":
        return []
    return [(key, config[key]["config"]) for key in ("layer", "backward_layer")
            if isinstance(config.get(key), dict) and config[key].get("class_name") in _RECURRENT
            and isinstance(config[key].get("config"), dict)]
