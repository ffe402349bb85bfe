"""In-memory neutral models and bit-for-bit comparison, shared by the test modules.

Imports no framework at module level: modules that test only the converter, the error contract or
the model itself run with numpy alone. ``same_bits`` also takes torch tensors (imported only when one
is passed), so every test compares bits the same way.
"""

from __future__ import annotations

import numpy as np

from lstmconvert import Dense, Embedding, LSTMDirection, LSTMLayer, SequenceModel


def lstm_direction(inputs: int, hidden: int, *, dtype=np.float32, bias: bool = True, seed: int = 7) -> LSTMDirection:
    """One LSTM direction with values that have infinite decimal expansions, so any rounding shows."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) / 3).astype(dtype)

    return LSTMDirection(w(4 * hidden, inputs), w(4 * hidden, hidden),
                         w(4 * hidden) if bias else None, w(4 * hidden) if bias else None)


def tagger(*, layers: int = 2, hidden: int = 5, head: bool = True, dtype=np.float32, bias: bool = True,
           vocab: int = 11, embed: int = 6, classes: int = 3, seed: int = 7) -> SequenceModel:
    """Embedding -> ``layers`` unidirectional LSTMs -> optional softmax Dense head, validated."""
    rng = np.random.default_rng(seed)
    dirs = [lstm_direction(embed if k == 0 else hidden, hidden, dtype=dtype, bias=bias, seed=seed + 1 + k)
            for k in range(layers)]
    return SequenceModel(
        layers=[LSTMLayer([d]) for d in dirs],
        embedding=Embedding(rng.standard_normal((vocab, embed)).astype(dtype)),
        head=[Dense(rng.standard_normal((classes, hidden)).astype(dtype), rng.standard_normal(classes).astype(dtype),
                    "softmax")] if head else [],
        input_kind="tokens",
    ).validate()


def same_bits(a, b) -> bool:
    """True if two arrays (numpy, or torch tensors) have the same dtype, shape and bit pattern."""
    return _bits(a) == _bits(b)


def same_arrays(first: SequenceModel, second: SequenceModel) -> bool:
    """Two neutral models hold the same arrays under the same names, bit for bit."""
    a, b = first.arrays(), second.arrays()
    return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)


def _bits(x) -> tuple:
    if hasattr(x, "element_size"):  # a torch tensor: its bits as integers (numpy has no bfloat16 of its own)
        import torch

        width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
        return str(x.dtype), tuple(x.shape), x.detach().contiguous().view(width).cpu().numpy().tobytes()
    x = np.asarray(x)
    return x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes()
