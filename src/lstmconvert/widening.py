"""The widening rule for one LSTM and the modules that read its output, on numpy arrays only.

Function preservation needs three facts, not a whole model: what feeds the LSTM (left untouched), the
LSTM itself (gains a backward direction) and every consumer of its output (gets zero weights on the
backward half). This module holds that maths once. ``convert.to_bidirectional`` applies it to a pure
``[Embedding] -> LSTM stack -> [Dense]`` model (its chain case); each format's in-place editor
(``formats/*/editor.py``) applies it to the LSTMs and consumers it finds in a file of any shape and
re-encodes them with that format's own weight converters.

A consumer's input weights are seen as one matrix with the widened features on ``axis``. Where the
LSTM's output lands in that axis is a list of ``Block(start, width)``: one block for a plain reader,
one at an offset after a ``Concatenate``, one per time step after a ``Flatten`` over time. With
``merge="concat"`` each block is followed by a new block of the same width for the backward half, so a
block of ``H`` features at ``start`` becomes ``[forward H | backward H]`` at its shifted position.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .model import LSTMDirection


@dataclass(frozen=True)
class Block:
    """``width`` features of the LSTM's output, starting at ``start`` on the consumer's input axis."""

    start: int
    width: int


class Initialiser:
    """Fresh weights drawn like the source framework draws them, from one seeded generator.

    ``style="torch"``: every LSTM parameter and Linear weight from U(-1/sqrt(fan), 1/sqrt(fan)).
    ``style="keras"``: glorot-uniform kernels, orthogonal recurrent kernels, unit forget bias.
    """

    def __init__(self, seed: int, style: str = "torch") -> None:
        if style not in ("torch", "keras"):
            raise ValueError(f"initialiser style must be 'torch' or 'keras', not {style!r}")
        self.rng = np.random.default_rng(seed)
        self.keras_style = style == "keras"

    def _uniform(self, shape: tuple, bound: float, like: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-bound, bound, size=shape).astype(like.dtype)

    def linear_like(self, weight: np.ndarray, fan_in_rows: bool) -> np.ndarray:
        """Random values shaped like a consumer's ``(out, in)`` weights that double their input width."""
        out_features, in_features = weight.shape
        if self.keras_style:
            bound = np.sqrt(6.0 / (2 * in_features + out_features))
        else:
            bound = 1.0 / np.sqrt(out_features // 4 if fan_in_rows else 2 * in_features)
        return self._uniform(weight.shape, bound, weight)

    def lstm_direction_like(self, forward: LSTMDirection) -> LSTMDirection:
        hidden, like = forward.hidden_size, forward.w_ih
        arrays = {}
        if self.keras_style:
            four_h, inputs = forward.w_ih.shape
            arrays["w_ih"] = self._uniform(forward.w_ih.shape, np.sqrt(6.0 / (inputs + four_h)), like)
            q, r = np.linalg.qr(self.rng.standard_normal((4 * hidden, forward.w_hh.shape[1])))
            arrays["w_hh"] = (q * np.sign(np.diag(r))).astype(like.dtype)
            if forward.has_bias:
                bias = np.zeros(4 * hidden)
                bias[hidden : 2 * hidden] = 1.0  # unit forget bias
                arrays["b_ih"] = bias.astype(like.dtype)
            for name in ("w_hr", "peephole"):
                if getattr(forward, name) is not None:
                    arrays[name] = self._uniform(getattr(forward, name).shape, 1.0 / np.sqrt(hidden), like)
        else:
            bound = 1.0 / np.sqrt(hidden)
            for name, array in forward.arrays().items():
                arrays[name] = self._uniform(array.shape, bound, like)
        return LSTMDirection(**arrays, activations=forward.activations)


def backward_direction(forward: LSTMDirection, how: str, init: Initialiser) -> LSTMDirection:
    """The new backward direction: a copy of ``forward`` (its arrays shared), zeros, or fresh weights."""
    if how == "copy":
        return copy.copy(forward)  # the forward arrays themselves: stored once, written twice
    if how == "zeros":
        return LSTMDirection(
            **{name: np.zeros_like(a) for name, a in forward.arrays().items()},
            activations=forward.activations,
        )
    return init.lstm_direction_like(forward)


def widen_consumer(
    weight: np.ndarray,
    *,
    merge: str,
    preserve: bool,
    init: Initialiser,
    axis: int = 1,
    blocks: Sequence[Block] | None = None,
    fan_in_rows: bool = False,
) -> np.ndarray:
    """A consumer's input weights adapted to the widened LSTM output.

    Args:
        weight: the consumer's weights; ``axis`` is its input-feature axis (1 for ``(out, in)``
            matrices, 0 for Keras kernels ``(in, out)``; any rank, e.g. a Conv1D kernel).
        merge: "concat" inserts a backward block after each forward block (zeros when ``preserve``,
            else fresh random values); "ave" with ``preserve`` doubles the blocks' weights (exact in
            binary floating point); "sum"/"mul" leave the weights as they are.
        blocks: where the LSTM's output lands on ``axis``; default: the whole axis is one block.
        fan_in_rows: the consumer is an LSTM's ``w_ih`` (random bounds use its hidden size).

    Returns:
        A new array; ``weight`` is not modified.
    """
    axis = axis % weight.ndim
    if blocks is None:
        blocks = [Block(0, weight.shape[axis])]
    blocks = sorted(blocks, key=lambda b: b.start)
    for block in blocks:
        if block.start < 0 or block.width <= 0 or block.start + block.width > weight.shape[axis]:
            raise ValueError(f"block {block} does not fit an input axis of {weight.shape[axis]}")
    if merge == "concat":
        pieces, cursor = [], 0
        for block in blocks:
            end = block.start + block.width
            forward = np.take(weight, range(block.start, end), axis=axis)
            pieces.append(np.take(weight, range(cursor, end), axis=axis))
            if preserve:
                pieces.append(np.zeros_like(forward))
            else:
                pieces.append(_random_like(forward, axis, init, fan_in_rows))
            cursor = end
        pieces.append(np.take(weight, range(cursor, weight.shape[axis]), axis=axis))
        return np.concatenate(pieces, axis=axis)
    widened = weight.copy()
    if merge == "ave" and preserve:
        index = [slice(None)] * weight.ndim
        for block in blocks:
            index[axis] = slice(block.start, block.start + block.width)
            widened[tuple(index)] = widened[tuple(index)] * weight.dtype.type(2)  # undo the halving exactly
    return widened


def _random_like(forward: np.ndarray, axis: int, init: Initialiser, fan_in_rows: bool) -> np.ndarray:
    """Fresh values for a backward block, drawn with the bounds of a 2-D ``(out, in)`` consumer."""
    moved = np.moveaxis(forward, axis, -1)
    matrix = moved.reshape(-1, moved.shape[-1])
    fresh = init.linear_like(matrix, fan_in_rows).reshape(moved.shape)
    return np.moveaxis(fresh, -1, axis)
