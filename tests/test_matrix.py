"""The cross-format matrix: every source format x every target format, checked in the real runtimes.

Sources are tiny models built here in each framework (PyTorch state_dicts, Keras 3 archives, ONNX
files from torch.onnx.export), in four shapes: single or stacked LSTM, sequence or last-state
readout, with and without embedding and head (the Keras ones masked where a mask fits). Each case
converts a source to a target format, keeping the direction or widening it with one merge/backward
combination, and ``verify`` runs source and target in their own frameworks.

The expected verdict is what ``preservation()`` promises for that conversion: "exact" and
"forward-half" must pass, "none" (e.g. merge sum with a copied backward direction) must fail, so
every case can fail. All (source format, target format, conversion, model shape) combinations would
be 252 cases; the covering design runs every source x target x conversion triple (63 cases) and
meets every model shape with every value of the other factors.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import lstmconvert  # noqa: E402
from lstmconvert.convert import preservation  # noqa: E402
from lstmconvert.checks.check import LoadedFile, verify_loaded  # noqa: E402
from needs import needs  # noqa: E402

FORMATS = ("torch", "keras", "onnx")
SUFFIX = {"torch": ".pt", "keras": ".keras", "onnx": ".onnx"}
# (backward, merge) for uni -> bi; None keeps the direction and only changes the format.
CONVERSIONS = (None, ("copy", "concat"), ("random", "concat"), ("zeros", "concat"), ("zeros", "sum"),
               ("zeros", "ave"), ("copy", "sum"))
# name: (stacked, readout, tokens + embedding + head)
SHAPES = {
    "single-seq": (False, "sequence", False),
    "stacked-last-head": (True, "last", False),
    "stacked-seq-tokens-head": (True, "sequence", True),
    "single-last": (False, "last", False),
}
FEATURES, VOCAB = 3, 10


def covering_design() -> list:
    """Every (source, target, conversion) triple once, each given the model shape that covers the
    most not-yet-seen (shape, other factor) pairs; deterministic."""
    uncovered = {(k, value, shape) for k, values in enumerate((FORMATS, FORMATS, CONVERSIONS))
                 for value in values for shape in SHAPES}
    cases = []
    for n, triple in enumerate(itertools.product(FORMATS, FORMATS, CONVERSIONS)):
        names = list(SHAPES)
        rotated = names[n % len(names):] + names[: n % len(names)]  # ties go round the shapes
        shape = max(rotated, key=lambda s: sum((k, v, s) in uncovered for k, v in enumerate(triple)))
        uncovered -= {(k, v, shape) for k, v in enumerate(triple)}
        cases.append((*triple, shape))
    return cases


CASES = covering_design()


def case_id(case) -> str:
    src, dst, conversion, shape = case
    how = "keep" if conversion is None else f"{conversion[1]}-{conversion[0]}"
    return f"{src}-{dst}-{how}-{shape}"


# -- sources, built in each framework ---------------------------------------------------------------

def torch_modules(shape: str, seed: int):
    """The PyTorch module for a shape (also exported to ONNX) and what it returns."""
    import torch
    from torch import nn

    stacked, readout, tokens = SHAPES[shape]
    torch.manual_seed(seed)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = 4 if tokens else FEATURES
            self.embedding = nn.Embedding(VOCAB, width) if tokens else None
            self.lstm = nn.LSTM(width, 5, num_layers=2 if stacked else 1, batch_first=True)
            self.fc = nn.Linear(5, 3 if tokens else 2) if (tokens or stacked) else None

        def forward(self, x):
            if self.embedding is not None:
                x = self.embedding(x)
            y, (h, _) = self.lstm(x)
            out = y if readout == "sequence" else h[-1]
            return self.fc(out) if self.fc is not None else out

    return Model().eval()


def build_torch(shape: str, folder: Path) -> tuple:
    import torch

    module = torch_modules(shape, seed=1)
    path = folder / f"{shape}.pt"
    torch.save(module.state_dict(), path)
    return path, {"batch_first": True, "readout": SHAPES[shape][1]}


def build_onnx(shape: str, folder: Path) -> tuple:
    import torch

    module = torch_modules(shape, seed=2)
    tokens = SHAPES[shape][2]
    example = torch.randint(1, VOCAB, (2, 5)) if tokens else torch.randn(2, 5, FEATURES)
    path = folder / f"{shape}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}}, dynamo=False)
    return path, {}


def build_keras(shape: str, folder: Path) -> tuple:
    import keras

    stacked, readout, tokens = SHAPES[shape]
    keras.utils.set_random_seed(3)
    if tokens:
        layers = [keras.Input((None,), dtype="int32"), keras.layers.Embedding(VOCAB, 4, mask_zero=True)]
    else:
        layers = [keras.Input((None, FEATURES))]
        if stacked:
            layers.append(keras.layers.Masking(0.0))
    if stacked:
        layers.append(keras.layers.LSTM(5, return_sequences=True))
    layers.append(keras.layers.LSTM(5, return_sequences=readout == "sequence"))
    if tokens:
        layers.append(keras.layers.Dense(3, activation="softmax"))
    elif stacked:
        layers.append(keras.layers.Dense(2))
    model = keras.Sequential(layers)
    rng = np.random.default_rng(4)
    for layer in model.layers:  # random biases too, so a lost or doubled bias shows
        layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()])
    path = folder / f"{shape}.keras"
    model.save(path)
    return path, {}


BUILDERS = {"torch": build_torch, "keras": build_keras, "onnx": build_onnx}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(format, shape) -> LoadedFile, built on first use; its runtime outputs are remembered."""
    folder = tmp_path_factory.mktemp("sources")
    built: dict = {}

    def get(fmt: str, shape: str) -> tuple:
        if (fmt, shape) not in built:
            path, hints = BUILDERS[fmt](shape, folder)
            built[fmt, shape] = (LoadedFile.open(path, **hints), hints)
        return built[fmt, shape]

    return get


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matrix(case, sources, tmp_path):
    src_format, dst_format, conversion, shape = case
    needs(src_format, dst_format, *(["torch"] if src_format == "onnx" else []))  # ONNX sources are torch exports
    source, hints = sources(src_format, shape)
    model = lstmconvert.load(source.path, **hints)
    assert model.readout == SHAPES[shape][1]  # the source is what this case claims to be
    if conversion is None:
        status = "exact"
    else:
        backward, merge = conversion
        status = preservation(model, backward=backward, merge=merge).status
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lstmconvert.to_bidirectional(model, backward=backward, merge=merge, seed=7)
    dst = tmp_path / f"converted{SUFFIX[dst_format]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmconvert.save(model, dst)
    target = LoadedFile.open(dst)
    assert target.model.bidirectional == (conversion is not None)

    report = verify_loaded(source, target, diagnose=status == "none")
    if status == "none":
        assert not report.passed, f"{case_id(case)}: a non-preserving conversion verified:\n{report.render_text()}"
        assert report.failed_inputs
    else:
        assert report.passed, report.render_text()
        assert report.expect == ("same" if status == "exact" else "forward-half")


def test_design_covers_every_combination():
    """Every source x target x conversion runs, and every shape meets every value of the others."""
    assert {c[:3] for c in CASES} == set(itertools.product(FORMATS, FORMATS, CONVERSIONS))
    for k, values in enumerate((FORMATS, FORMATS, CONVERSIONS)):
        assert {(c[k], c[3]) for c in CASES} == set(itertools.product(values, SHAPES)), k
