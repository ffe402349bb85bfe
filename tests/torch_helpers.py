"""User-side PyTorch code for the tests: the modules a user would have written, and ways to run them.

These classes mirror fixtures/make_torch_fixtures.py the way a user's own training code would; the
``bidirectional=True`` variants are what a user writes to load a widened checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "torch"
VOCAB = 12


class Tagger(nn.Module):
    """Token ids (T, N) -> per-step logits (T, N, 2); ``batch_first`` makes it (N, T) -> (N, T, 2)."""

    def __init__(self, hidden: int = 16, layers: int = 2, bias: bool = True, proj_size: int = 0,
                 bidirectional: bool = False, batch_first: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.lstm = nn.LSTM(8, hidden, num_layers=layers, bias=bias, proj_size=proj_size,
                            bidirectional=bidirectional, batch_first=batch_first)
        self.fc = nn.Linear((proj_size or hidden) * (2 if bidirectional else 1), 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out)

    def forward_packed(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Right-padded seq-first batch through a PackedSequence, the PyTorch way to skip padding."""
        packed = pack_padded_sequence(self.embed(tokens), lengths, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, total_length=tokens.shape[0])
        return self.fc(out)


class Classifier(nn.Module):
    """Features (N, T, 4) -> logits (N, 3) from the last state h_n (both directions if widened)."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 12, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(24 if bidirectional else 12, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(features)
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.lstm.bidirectional else h_n[-1]
        return self.fc(last)


class StackedTagger(nn.Module):
    """Two separate nn.LSTM modules of different widths, then a Linear."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        d = 2 if bidirectional else 1
        self.embed = nn.Embedding(VOCAB, 6)
        self.lstm1 = nn.LSTM(6, 10, bidirectional=bidirectional)
        self.lstm2 = nn.LSTM(10 * d, 7, bidirectional=bidirectional)
        self.fc = nn.Linear(7 * d, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm1(self.embed(tokens))
        out, _ = self.lstm2(out)
        return self.fc(out)


class MixedTagger(nn.Module):
    """A bidirectional LSTM, then a unidirectional one (``widened``: bidirectional too), then a Linear."""

    def __init__(self, widened: bool = False) -> None:
        super().__init__()
        d = 2 if widened else 1
        self.embed = nn.Embedding(VOCAB, 6)
        self.lower = nn.LSTM(6, 5, bidirectional=True)
        self.upper = nn.LSTM(10, 4, bidirectional=widened)
        self.fc = nn.Linear(4 * d, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lower(self.embed(tokens))
        out, _ = self.upper(out)
        return self.fc(out)


def load_user(cls, path, **kwargs) -> nn.Module:
    """Build the user's module and load a checkpoint into it with strict=True."""
    module = cls(**kwargs)
    module.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"), strict=True)
    return module.eval()


def tokens(seed: int, steps: int, batch: int) -> torch.Tensor:
    """Seq-first token ids (T, N) in 1..VOCAB-1 (0 is left for padding)."""
    return torch.randint(1, VOCAB, (steps, batch), generator=torch.Generator().manual_seed(seed))


def padded_tokens(seed: int, lengths: list, steps: int = 0) -> torch.Tensor:
    """Seq-first (max(steps, max(lengths)), N) token ids, right-padded with 0."""
    ids = tokens(seed, max(steps, *lengths), len(lengths))
    for n, length in enumerate(lengths):
        ids[length:, n] = 0
    return ids


def features(seed: int, batch: int, steps: int) -> torch.Tensor:
    return torch.randn(batch, steps, 4, generator=torch.Generator().manual_seed(seed))


def numpy_out(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module(x).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-6) -> None:
    """fp32 outputs of two PyTorch runs agree to ~1e-6 (recurrences reorder a few float sums)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
