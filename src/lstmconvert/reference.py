"""A plain-numpy forward pass of the neutral model, in float64.

It exists to *diagnose* mismatches: ``verify`` replays the usual conversion bugs (permuted gate
blocks, a dropped bias, a direction run in the wrong time order...) through it and sees which one
reproduces what a runtime actually computed. It is never the judge of a conversion: verify and the
tests always compare the frameworks' own runtimes with each other.

Semantics follow ``lstmconvert.model``: gate order i, f, g, o; both biases added; direction 1 runs
backward in time with its output in original time order; masked steps (token id 0, or features all
equal to ``mask_value``) are skipped, keeping the state, and output 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .model import Activation, Dense, LSTMDirection, LSTMLayer, SequenceModel


@dataclass(frozen=True)
class Deviation:
    """A wrong way of running a model, to compare against a runtime that may do just that.

    * ``wrong_time_order``: (layer, direction) pairs that run in the opposite time order (their
      output still in original time order).
    * ``unflipped_output``: (layer, direction) pairs whose output stays in processing order, i.e. a
      backward direction that is never flipped back (Keras ``go_backwards`` without the flip).
    * ``swapped_halves``: layers whose concatenated output puts the backward direction first.
    * ``ignore_mask``: padding steps are processed like real ones.
    """

    wrong_time_order: frozenset = frozenset()
    unflipped_output: frozenset = frozenset()
    swapped_halves: frozenset = frozenset()
    ignore_mask: bool = False


NO_DEVIATION = Deviation()


def activation_function(act: Activation) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy function for an ``Activation``."""
    name = act.name
    if name == "sigmoid":
        return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
    if name == "tanh":
        return np.tanh
    if name == "relu":
        return lambda x: np.maximum(x, 0.0)
    if name == "linear":
        return lambda x: x
    if name == "softsign":
        return lambda x: x / (1.0 + np.abs(x))
    if name == "softplus":
        return lambda x: np.logaddexp(0.0, x)
    if name == "hard_sigmoid":
        alpha, beta = float(act.alpha), float(act.beta)
        return lambda x: np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "elu":
        alpha = 1.0 if act.alpha is None else float(act.alpha)
        return lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    raise ValueError(f"no reference implementation of activation {name!r}")  # model.py lists all names


def step_mask(model: SequenceModel, inputs: np.ndarray) -> np.ndarray:
    """(N, T) bool: True on real steps. All True for an unmasked model."""
    if not model.masked:
        return np.ones(inputs.shape[:2], dtype=bool)
    if model.input_kind == "tokens":
        return inputs != 0
    return ~np.all(inputs == model.mask_value, axis=-1)


def forward(model: SequenceModel, inputs: np.ndarray, deviation: Deviation = NO_DEVIATION) -> np.ndarray:
    """Run ``model`` on batch-major ``inputs`` ((N, T) ids or (N, T, F) features) in float64.

    Returns (N, T, F) for readout "sequence" (0 at padding steps) or (N, F) for "last".
    """
    mask = step_mask(model, inputs)
    if deviation.ignore_mask:
        mask = np.ones_like(mask)
    if model.input_kind == "tokens":
        x = _f64(model.embedding.weight)[np.asarray(inputs, dtype=np.int64)]
    else:
        x = np.asarray(inputs, dtype=np.float64)
    last = None
    for k, layer in enumerate(model.layers):
        x, last = _layer(layer, k, x, mask, deviation)
    y = x if model.readout == "sequence" else last
    for dense in model.head:
        y = _dense(dense, y)
    if model.readout == "sequence":
        y = np.where(mask[..., None], y, 0.0)
    return y


def _layer(layer: LSTMLayer, k: int, x: np.ndarray, mask: np.ndarray, dev: Deviation):
    """One layer: its merged (N, T, F) output and its merged final state (N, F)."""
    outputs, finals = [], []
    for d, direction in enumerate(layer.directions):
        backward = d == 1 or layer.reverse
        if (k, d) in dev.wrong_time_order:
            backward = not backward
        unflipped = (k, d) in dev.unflipped_output or (layer.reverse and layer.reversed_output)
        out, final = _direction(direction, x, mask, backward, layer.clip, layer.input_forget)
        if unflipped:
            out = out[:, ::-1]
        outputs.append(out)
        finals.append(final)
    if k in dev.swapped_halves:
        outputs.reverse()
        finals.reverse()
    return _merge(layer.merge, outputs), _merge(layer.merge, finals)


def _merge(mode: str, parts: list) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    if mode == "concat":
        return np.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    if mode == "ave":
        return (a + b) / 2.0
    return a * b  # "mul"


def _direction(
    direction: LSTMDirection,
    x: np.ndarray,
    mask: np.ndarray,
    backward: bool,
    clip: Optional[float],
    input_forget: bool,
):
    """Run one direction over (N, T, I); outputs (N, T, H_out) in original time order, final h."""
    n, t_len, _ = x.shape
    hidden = direction.hidden_size
    w_ih, w_hh = _f64(direction.w_ih), _f64(direction.w_hh)
    bias = np.zeros(4 * hidden)
    for b in (direction.b_ih, direction.b_hh):
        if b is not None:
            bias = bias + _f64(b)
    w_hr = None if direction.w_hr is None else _f64(direction.w_hr)
    peep = None if direction.peephole is None else _f64(direction.peephole).reshape(3, hidden)
    gate_act, cell_act, out_act = (activation_function(a) for a in direction.activations)

    h = np.zeros((n, direction.output_size))
    c = np.zeros((n, hidden))
    out = np.zeros((n, t_len, direction.output_size))
    steps = range(t_len - 1, -1, -1) if backward else range(t_len)
    for t in steps:
        z = x[:, t] @ w_ih.T + h @ w_hh.T + bias
        if clip is not None:
            z = np.clip(z, -clip, clip)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        if peep is not None:
            zi = zi + peep[0] * c
            zf = zf + peep[1] * c
        i = gate_act(zi)
        f = 1.0 - i if input_forget else gate_act(zf)
        c_new = f * c + i * cell_act(zg)
        if peep is not None:
            zo = zo + peep[2] * c_new  # the output peephole looks at the new cell state
        h_new = gate_act(zo) * out_act(c_new)
        if w_hr is not None:
            h_new = h_new @ w_hr.T
        real = mask[:, t][:, None]
        c = np.where(real, c_new, c)
        h = np.where(real, h_new, h)
        out[:, t] = np.where(real, h_new, 0.0)
    return out, h


def _dense(dense: Dense, x: np.ndarray) -> np.ndarray:
    y = x @ _f64(dense.weight).T
    if dense.bias is not None:
        y = y + _f64(dense.bias)
    act = dense.activation
    if act == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if act == "linear":
        return y
    return activation_function(Activation(act))(y)


def _f64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.float64)
