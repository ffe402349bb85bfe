"""The module a PyTorch user trains: embedding -> nn.LSTM (seq-first) -> Linear, per time step.

It mirrors ``Tagger`` in fixtures/make_torch_fixtures.py (same attribute names, same forward), with
the sizes as arguments, so its state_dicts have the fixture's keys at any size.
"""

from __future__ import annotations

import torch
from torch import nn


class Tagger(nn.Module):
    """Token ids (T, N) -> per-step logits (T, N, tags)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, tags: int,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out)


class ConvTagger(Tagger):
    """Tagger with a Conv1d front end between the embedding and the LSTM (a CRNN over token embeddings):
    outside the pure-stack shape, so lstmconvert widens it in place; the same size as Tagger, give or
    take the conv's embed x embed x 3 weights."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, tags: int,
                 bidirectional: bool = False) -> None:
        super().__init__(vocab, embed, hidden, layers, tags, bidirectional)
        self.conv = nn.Conv1d(embed, embed, 3, padding=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(self.embed(tokens).permute(1, 2, 0))).permute(2, 0, 1)
        out, _ = self.lstm(features)
        return self.fc(out)


def sizes_of(state: dict) -> dict:
    """Tagger's constructor arguments, read off a unidirectional state_dict's shapes."""
    vocab, embed = state["embed.weight"].shape
    layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l") and not k.endswith("_reverse"))
    return {"vocab": vocab, "embed": embed, "hidden": state["lstm.weight_hh_l0"].shape[1],
            "layers": layers, "tags": state["fc.weight"].shape[0]}
