"""Seeded test inputs that fit a model: token ids inside its vocabulary, or float features.

Every batch is batch-major, as a format's ``run`` expects. The shapes cover the edges a runtime gets
wrong: a batch of one, a sequence of one step, and, for masked models, right-padded batches whose
sequences have different lengths (in no particular order, and one batch where even the longest
sequence is padded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import LstmConvertError
from ..model import SequenceModel

# (batch size, time steps, lengths or None). Lengths apply only to masked models.
_UNMASKED_SHAPES = ((1, 1, None), (1, 6, None), (3, 4, None), (2, 9, None))
_MASKED_SHAPES = ((1, 1, None), (3, 5, None), (4, 6, (6, 2, 4, 1)), (2, 7, (3, 5)))


@dataclass(frozen=True)
class InputCase:
    """One batch of inputs. ``lengths`` (N,) counts the real steps of each sequence."""

    data: np.ndarray
    lengths: np.ndarray

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    def label(self) -> str:
        """A short description, e.g. ``(4, 6) lengths 6,2,4,1``."""
        text = "(" + ", ".join(map(str, self.shape)) + ")"
        if np.any(self.lengths != self.data.shape[1]):
            text += " lengths " + ",".join(map(str, self.lengths.tolist()))
        return text

    def real_steps(self) -> np.ndarray:
        """(N, T) bool: True where a step is real (not padding)."""
        return np.arange(self.data.shape[1])[None, :] < self.lengths[:, None]


def make_inputs(
    model: SequenceModel,
    seed: int = 0,
    batch_sizes: Optional[Sequence[int]] = None,
    steps: Optional[Sequence[int]] = None,
) -> list:
    """Input batches for ``model``: several batch sizes (incl. 1) and lengths (incl. 1).

    Token ids are drawn from 1..vocab-1 (id 0 only as padding, and only when the model is masked:
    a masking embedding treats 0 as padding wherever it appears). Features are standard normal,
    in the model's dtype where numpy has it (float16/32/64), else float32; padding steps hold
    ``mask_value``.

    ``batch_sizes`` / ``steps`` replace the default shapes with every combination of the given
    sizes, for files that only run at some shapes (an exporter that fixed the time axis). Masked
    batches of more than one sequence then get seeded random lengths, the first one full.
    """
    rng = np.random.default_rng(seed)
    if batch_sizes is None and steps is None:
        shapes = _MASKED_SHAPES if model.masked else _UNMASKED_SHAPES
    else:
        shapes = _chosen_shapes(model, rng, batch_sizes or _DEFAULT_BATCHES, steps or _DEFAULT_STEPS)
    cases = []
    for n, t, lengths in shapes:
        lengths = np.full(n, t) if lengths is None else np.asarray(lengths)
        cases.append(InputCase(_draw(model, rng, n, t, lengths), lengths.astype(np.int64)))
    return cases


_DEFAULT_BATCHES = (1, 3)
_DEFAULT_STEPS = (1, 6)


def _chosen_shapes(model: SequenceModel, rng: np.random.Generator, batch_sizes, steps) -> list:
    shapes = []
    for n in batch_sizes:
        for t in steps:
            if n < 1 or t < 1:
                raise LstmConvertError(f"batch sizes and steps must be positive, got {n} x {t}")
            lengths = None
            if model.masked and n > 1 and t > 1:
                lengths = np.concatenate([[t], rng.integers(1, t + 1, size=n - 1)])
            shapes.append((int(n), int(t), lengths))
    return shapes


def feature_dtype(model: SequenceModel) -> np.dtype:
    """The dtype features are fed in: the model's own if numpy knows it, else float32 (bfloat16)."""
    dtype = np.dtype(model.dtype)
    return dtype if dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float32)


def _draw(model: SequenceModel, rng: np.random.Generator, n: int, t: int, lengths: np.ndarray) -> np.ndarray:
    real = np.arange(t)[None, :] < lengths[:, None]
    if model.input_kind == "tokens":
        vocab = model.embedding.vocab_size
        low = 1 if vocab > 1 else 0  # a one-word vocabulary has nothing but id 0
        ids = rng.integers(low, vocab, size=(n, t), dtype=np.int64)
        return np.where(real, ids, 0)
    dtype = feature_dtype(model)
    x = rng.standard_normal((n, t, model.input_size)).astype(dtype)
    if model.masked:
        x[~real] = dtype.type(model.mask_value)
        # A real step whose features all happen to equal mask_value would be skipped; nudge it.
        clash = real & np.all(x == dtype.type(model.mask_value), axis=-1)
        x[clash] = dtype.type(model.mask_value + 1)
    return x
