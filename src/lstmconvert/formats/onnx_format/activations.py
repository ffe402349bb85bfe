"""ONNX LSTM activation attributes <-> lstmconvert's Activation values.

ONNX lists the activations per direction as (f, g, h) = (gates, cell input, cell output), which is
the neutral model's (gate, cell, output) order. ``activation_alpha``/``activation_beta`` are consumed
in function order, one value per function that takes the parameter; this follows onnxruntime
(``rnn_helpers.cc``: Tanh/Sigmoid consume nothing, HardSigmoid consumes an alpha and a beta, Elu an
alpha). A missing value falls back to the operator's default, as onnxruntime does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import UnsupportedError
from ...model import Activation

# ONNX name -> (takes alpha, takes beta); the full list the LSTM operator allows.
_ONNX_PARAMS = {
    "Relu": (False, False), "Tanh": (False, False), "Sigmoid": (False, False),
    "Affine": (True, True), "LeakyRelu": (True, False), "ThresholdedRelu": (True, False),
    "ScaledTanh": (True, True), "HardSigmoid": (True, True), "Elu": (True, False),
    "Softsign": (False, False), "Softplus": (False, False),
}
# Defaults of the ONNX operators of the same name; others have none a reader could rely on.
_ONNX_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}

_TO_NEUTRAL = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softsign": "softsign",
               "Softplus": "softplus", "HardSigmoid": "hard_sigmoid", "Elu": "elu"}
_TO_ONNX = {v: k for k, v in _TO_NEUTRAL.items()}
_CANONICAL = {name.lower(): name for name in _ONNX_PARAMS}


def float32_value(value: float) -> float:
    """The float32 attribute value as the shortest decimal that reads back to it (0.2, not 0.2000000029)."""
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def decode(names: Sequence[str], alphas: Sequence[float], betas: Sequence[float], directions: int,
           where: str) -> list:
    """The per-direction activation triples of an LSTM node's attributes.

    ``names`` empty means the ONNX default (Sigmoid, Tanh, Tanh) for every direction.
    """
    if not names:
        if alphas or betas:
            raise UnsupportedError(f"{where}: activation_alpha/beta are set but activations is not")
        return [None] * directions
    if len(names) != 3 * directions:
        raise UnsupportedError(f"{where}: {len(names)} activations for {directions} direction(s); expected {3 * directions}")
    canonical = []
    for name in names:
        if name.lower() not in _CANONICAL:
            raise UnsupportedError(f"{where}: unknown activation {name!r}")
        canonical.append(_CANONICAL[name.lower()])
    alpha_users = sum(_ONNX_PARAMS[n][0] for n in canonical)
    beta_users = sum(_ONNX_PARAMS[n][1] for n in canonical)
    # Runtimes disagree on whether every function consumes an entry; only an exact count is unambiguous.
    for label, values, users in (("activation_alpha", alphas, alpha_users), ("activation_beta", betas, beta_users)):
        if values and len(values) != users:
            raise UnsupportedError(
                f"{where}: {label} has {len(values)} value(s) but {users} activation(s) take one; "
                "its meaning is ambiguous"
            )
    alpha_iter, beta_iter = iter(alphas), iter(betas)
    result = []
    for name in canonical:
        takes_alpha, takes_beta = _ONNX_PARAMS[name]
        default_alpha, default_beta = _ONNX_DEFAULTS.get(name, (None, None))
        alpha = next(alpha_iter, default_alpha) if takes_alpha else None
        beta = next(beta_iter, default_beta) if takes_beta else None
        result.append(_to_activation(name, alpha, beta, where))
    return [tuple(result[3 * d: 3 * d + 3]) for d in range(directions)]


def _to_activation(name: str, alpha, beta, where: str) -> Activation:
    if name == "Affine":
        if alpha is None or beta is None:
            raise UnsupportedError(f"{where}: Affine activation without explicit alpha and beta (runtimes default differently)")
        if float(alpha) == 1.0 and float(beta) == 0.0:
            return Activation("linear")
        raise UnsupportedError(f"{where}: Affine activation with alpha={alpha:g}, beta={beta:g} has no lstmconvert equivalent (only alpha=1, beta=0)")
    if name not in _TO_NEUTRAL:
        raise UnsupportedError(f"{where}: activation {name} is not supported (Keras and PyTorch have no equivalent)")
    if alpha is None and _ONNX_PARAMS[name][0]:
        raise UnsupportedError(f"{where}: activation {name} has no alpha")
    return Activation(
        _TO_NEUTRAL[name],
        alpha=float32_value(alpha) if _ONNX_PARAMS[name][0] else None,
        beta=float32_value(beta) if _ONNX_PARAMS[name][1] else None,
    )


def encode(per_direction: Sequence[tuple]) -> dict:
    """LSTM attributes for the directions' activations; empty when all are ONNX's defaults."""
    flat = [a for triple in per_direction for a in triple]
    defaults = [Activation("sigmoid"), Activation("tanh"), Activation("tanh")] * len(per_direction)
    if flat == defaults:
        return {}
    names, alphas, betas = [], [], []
    for act in flat:
        if act.name == "linear":
            names.append("Affine")
            alphas.append(1.0)
            betas.append(0.0)
            continue
        onnx_name = _TO_ONNX[act.name]
        names.append(onnx_name)
        if act.alpha is not None:
            alphas.append(float(act.alpha))
        if act.beta is not None:
            betas.append(float(act.beta))
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs
