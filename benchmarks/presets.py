"""How big and how often: the full run, ``--quick`` for development, ``--smoke`` for the test suite."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    """A Tagger (embedding -> LSTM stack -> Linear head), as scripts/user_model.py builds it."""

    vocab: int
    embed: int
    hidden: int
    layers: int
    tags: int

    def args(self) -> list:
        return [f"--{name}={getattr(self, name)}" for name in ("vocab", "embed", "hidden", "layers", "tags")]

    def with_hidden(self, hidden: int) -> "ModelSize":
        return ModelSize(self.vocab, self.embed, hidden, self.layers, self.tags)

    def __str__(self) -> str:
        return f"emb {self.vocab}×{self.embed}, {self.layers}×LSTM({self.hidden}), head {self.tags}"


@dataclass(frozen=True)
class Preset:
    name: str
    repeats: int  # cold runs per start-up measurement (median reported)
    scale: ModelSize  # section 3's large model
    scale_repeats: int
    inference: ModelSize  # section 4's model
    steps: int  # sequence length for inference
    batches: tuple
    runs: int  # timed inference runs per batch size
    warmup: int
    growth: ModelSize  # section 5: fixed sizes; hidden varies
    growth_hidden: tuple
    growth_repeats: int
    all_pairs: bool = True  # section 1 probes all 9 format pairs; else only the two with targets


FULL = Preset(
    name="full", repeats=5,
    scale=ModelSize(vocab=50_000, embed=512, hidden=2048, layers=4, tags=50), scale_repeats=3,
    inference=ModelSize(vocab=10_000, embed=128, hidden=256, layers=2, tags=20), steps=100, batches=(1, 32),
    runs=50, warmup=5,
    growth=ModelSize(vocab=10_000, embed=256, hidden=0, layers=2, tags=20), growth_hidden=(256, 512, 1024, 2048),
    growth_repeats=3,
)

QUICK = Preset(
    name="quick", repeats=3,
    scale=ModelSize(vocab=5_000, embed=128, hidden=512, layers=2, tags=20), scale_repeats=2,
    inference=ModelSize(vocab=1_000, embed=32, hidden=64, layers=2, tags=5), steps=100, batches=(1, 32),
    runs=20, warmup=3,
    growth=ModelSize(vocab=1_000, embed=64, hidden=0, layers=2, tags=5), growth_hidden=(64, 128, 256, 512),
    growth_repeats=2,
)

SMOKE = Preset(
    name="smoke", repeats=1,
    scale=ModelSize(vocab=50, embed=8, hidden=16, layers=2, tags=3), scale_repeats=1,
    inference=ModelSize(vocab=50, embed=8, hidden=8, layers=1, tags=3), steps=5, batches=(1, 2),
    runs=2, warmup=1,
    growth=ModelSize(vocab=50, embed=8, hidden=0, layers=1, tags=3), growth_hidden=(8, 16),
    growth_repeats=1, all_pairs=False,
)

PRESETS = {p.name: p for p in (FULL, QUICK, SMOKE)}
