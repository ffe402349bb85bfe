"""Shared pieces of the Keras tests: fixture paths, padded input batches, real-step comparison."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

KERAS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"

# Mixed lengths, right-padded: the full length, two partial ones, and a single real step.
LENGTHS = np.array([7, 5, 3, 1])
STEPS = int(LENGTHS.max())


def token_batch(vocab: int, seed: int = 0) -> np.ndarray:
    """(N, T) int64 ids in 1..vocab-1, right-padded with 0 to LENGTHS."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(len(LENGTHS), STEPS))
    ids[np.arange(STEPS)[None, :] >= LENGTHS[:, None]] = 0
    return ids


def feature_batch(features: int, pad: float = 0.0, seed: int = 0) -> np.ndarray:
    """(N, T, F) float32 features, right-padded with ``pad`` to LENGTHS (real steps never equal pad)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(LENGTHS), STEPS, features)).astype(np.float32)
    x[np.abs(x - pad) < 1e-3] += 0.5
    x[np.arange(STEPS)[None, :] >= LENGTHS[:, None]] = pad
    return x


def batch_for(model, seed: int = 0) -> np.ndarray:
    """A padded batch that fits ``model``'s input (ids or features, padded with its mask value)."""
    if model.input_kind == "tokens":
        return token_batch(model.embedding.vocab_size, seed)
    return feature_batch(model.input_size, model.mask_value, seed)


def real_steps_max_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest difference over real steps only (padding outputs are unspecified across frameworks)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    if expected.ndim == 2:  # readout "last": one row per sequence
        return float(np.abs(expected - actual).max())
    return max(float(np.abs(expected[i, :n] - actual[i, :n]).max()) for i, n in enumerate(LENGTHS))


def reverse_real_steps(batch: np.ndarray) -> np.ndarray:
    """Each sequence's real steps in reverse order, still right-padded."""
    out = batch.copy()
    for i, n in enumerate(LENGTHS):
        out[i, :n] = batch[i, :n][::-1]
    return out


def keras_order(model) -> list:
    """The neutral model's arrays in Keras get_weights() order, in Keras layouts (kernels transposed)."""
    out = [] if model.embedding is None else [model.embedding.weight]
    for layer in model.layers:
        for direction in layer.directions:
            out += [direction.w_ih.T, direction.w_hh.T] + ([direction.b_ih] if direction.b_ih is not None else [])
    for dense in model.head:
        out += [dense.weight.T] + ([dense.bias] if dense.bias is not None else [])
    return out
