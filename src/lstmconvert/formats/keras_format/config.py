"""Keras layer-config values mapped to the neutral model: activations and dtype policies.

Both directions live here (reading a config value, and the value a writer puts in a config) so the
mapping is stated once.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...capabilities import capabilities
from ...errors import UnsupportedError
from ...model import Activation

# Keras activation names that map one-to-one onto the neutral model's (no parameters involved).
_PLAIN = ("sigmoid", "tanh", "relu", "linear", "softsign", "softplus")

# keras.activations.elu's default alpha; a config string "elu" always means this.
ELU_ALPHA = 1.0

# "hard_sigmoid" names two functions: clip(0.2x + 0.5) up to Keras 2 / tf.keras, clip(x/6 + 0.5) in
# Keras 3 (relu6(x + 3) / 6). The file's Keras version decides which one a config means.
HARD_SIGMOID_KERAS2 = (0.2, 0.5)
HARD_SIGMOID_KERAS3 = (1.0 / 6.0, 0.5)

def activation_name(value: object, where: str) -> str:
    """The Keras function name of a config activation: a string or a serialized function dict."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str):
        module = value.get("module") or "builtins"
        registered = value.get("registered_name")
        builtin = module == "builtins" or module.split(".")[0] in ("keras", "tf_keras")
        if builtin and (registered is None or registered == value["config"]):
            return value["config"]
        raise UnsupportedError(f"{where}: custom activation {registered or value['config']!r} from {module}")
    if isinstance(value, dict) and (value.get("class_name") == "__lambda__" or "value" in value):
        # Keras stores a lambda as marshalled bytecode; running it would execute code from the file.
        raise UnsupportedError(
            f"{where}: activation is a Python lambda stored as bytecode; lstmconvert never runs code from a "
            "file (use a built-in activation name)"
        )
    raise UnsupportedError(f"{where}: activation {_brief(value)} is not a built-in Keras activation function")


def read_activation(value: object, keras_major: Optional[int], where: str) -> Activation:
    """A config activation as a neutral Activation, exactly (``hard_sigmoid`` by Keras version)."""
    name = activation_name(value, where)
    if name in _PLAIN:
        return Activation(name)
    if name == "elu":
        return Activation("elu", alpha=ELU_ALPHA)
    if name == "hard_sigmoid":
        if keras_major is None:
            raise UnsupportedError(
                f"{where}: 'hard_sigmoid' means clip(0.2x+0.5) up to Keras 2 and clip(x/6+0.5) in Keras 3, "
                "and the file does not say which Keras wrote it"
            )
        alpha, beta = HARD_SIGMOID_KERAS3 if keras_major >= 3 else HARD_SIGMOID_KERAS2
        return Activation("hard_sigmoid", alpha=alpha, beta=beta)
    raise UnsupportedError(f"{where}: activation {name!r} has no equivalent in lstmconvert's model")


def keras3_activation(activation: Activation, where: str) -> str:
    """The Keras 3 config string computing ``activation``; refuse what Keras 3 cannot express."""
    if activation.name in _PLAIN:
        return activation.name
    if activation.name == "elu" and activation.alpha == ELU_ALPHA:
        return "elu"
    if activation.name == "hard_sigmoid":
        alpha, beta = HARD_SIGMOID_KERAS3
        if _same_f32(activation.alpha, alpha) and _same_f32(activation.beta, beta):
            return "hard_sigmoid"
        if _same_f32(activation.alpha, 0.2) and _same_f32(activation.beta, 0.5):
            raise UnsupportedError(
                f"{where}: hard_sigmoid clip(0.2x+0.5) (tf.keras / Keras 2) has no Keras 3 equivalent: "
                "Keras 3's 'hard_sigmoid' is clip(x/6+0.5) and a custom function would need unsafe "
                "deserialization; write ONNX instead (HardSigmoid alpha=0.2)"
            )
    raise UnsupportedError(f"{where}: activation {activation} has no Keras 3 equivalent")


def policy_name(config: dict, where: str) -> Optional[str]:
    """The dtype a layer computes and stores in; refuse mixed and quantized policies."""
    dtype = config.get("dtype")
    if dtype is None:
        return None
    if isinstance(dtype, dict):
        cls = str(dtype.get("class_name", ""))
        name = (dtype.get("config") or {}).get("name")
        if "Quantiz" in cls or (isinstance(name, str) and name.split("_")[0] in ("int8", "int4", "float8")):
            raise UnsupportedError(f"{where}: quantized layers ({name}) are not supported")
    else:
        name = dtype
    if not isinstance(name, str):
        raise UnsupportedError(f"{where}: unreadable dtype policy {_brief(dtype)}")
    if name.startswith("mixed_"):
        raise UnsupportedError(
            f"{where}: dtype policy {name!r} keeps float32 weights but computes in {name[len('mixed_'):]}, "
            "which lstmconvert cannot carry exactly (one dtype per layer); rebuild the model under the "
            "'float32' policy, copy the weights over (set_weights(get_weights())) and save that"
        )
    if name not in capabilities("keras").dtypes:
        raise UnsupportedError(f"{where}: dtype {name!r} is not a floating-point type lstmconvert carries")
    return name


def _same_f32(a: Optional[float], b: float) -> bool:
    """Equal at float32 precision: ONNX stores activation parameters as float32."""
    return a is not None and np.float32(a) == np.float32(b)


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
