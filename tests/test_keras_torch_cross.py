"""PyTorch <-> Keras: a file converted to the other framework reproduces, in that framework's runtime,
the outputs the source computes in its own.

Tolerance: torch and Keras sum the gate pre-activations in different orders, and Keras folds PyTorch's
two biases into one, so float32 outputs agree to a few ulps of the activations, not bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from needs import needs

needs("torch", "keras")  # every test converts between the two and runs both

import lstmconvert  # noqa: E402
from lstmconvert import LstmConvertError
from lstmconvert.formats.keras_format.writer import LayoutWarning
from keras_helpers import KERAS_FIXTURES, batch_for, real_steps_max_diff  # noqa: E402
from factories import same_bits  # noqa: E402

TORCH_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "torch"
CROSS_ATOL = 1e-5


def _convert(model, out, backward=None, merge="concat"):
    if backward is not None:
        model = lstmconvert.to_bidirectional(model, backward=backward, merge=merge, seed=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lstmconvert.save(model, out)
    return [w for w in caught if issubclass(w.category, LayoutWarning)]


@pytest.mark.parametrize("name,hints,backward,merge", [
    ("tagger.pt", {}, "copy", "concat"),
    ("classifier_last.pt", {"readout": "last"}, "zeros", "sum"),
])
def test_torch_to_keras_bidirectional(name, hints, backward, merge, tmp_path):
    src = TORCH_FIXTURES / name
    model = lstmconvert.load(src, **hints)
    batch = batch_for(model)  # the torch models are unmasked: every step is real
    expected = lstmconvert.run(src, batch, **hints)
    out = tmp_path / "bi.keras"
    layout_warnings = _convert(model, out, backward, merge)
    assert len(layout_warnings) == (0 if model.batch_first else 1)  # seq-first torch -> batch-major Keras
    back = lstmconvert.load(out)
    assert all(layer.bidirectional and layer.merge == merge for layer in back.layers)
    actual = lstmconvert.run(out, batch)
    assert actual.shape == expected.shape
    assert np.abs(actual.astype(np.float64) - expected).max() <= CROSS_ATOL


@pytest.mark.parametrize("name,backward,merge", [
    ("tagger.keras", "copy", "concat"),
    ("classifier.h5", "zeros", "ave"),
    ("bidirectional.keras", None, None),
])
def test_keras_to_torch(name, backward, merge, tmp_path):
    """Masked Keras models (right-padded batches of mixed lengths) run in torch after conversion."""
    src = KERAS_FIXTURES / name
    model = lstmconvert.load(src)
    batch = batch_for(model)
    expected = lstmconvert.run(src, batch)
    out = tmp_path / "converted.pt"
    _convert(model, out, backward, merge)
    assert real_steps_max_diff(expected, lstmconvert.run(out, batch)) <= CROSS_ATOL


def test_torch_keras_torch_keeps_weights(tmp_path):
    """Every array survives PyTorch -> Keras -> PyTorch bit for bit, except that Keras's single bias
    holds b_ih + b_hh."""
    source = lstmconvert.load(TORCH_FIXTURES / "tagger.pt")
    middle, back_file = tmp_path / "mid.keras", tmp_path / "back.pt"
    _convert(source, middle)
    _convert(lstmconvert.load(middle), back_file)
    back = lstmconvert.load(back_file)
    assert same_bits(back.embedding.weight, source.embedding.weight)
    for old, new in zip(source.head, back.head):
        assert same_bits(new.weight, old.weight) and same_bits(new.bias, old.bias)
    for old_layer, new_layer in zip(source.layers, back.layers):
        old, new = old_layer.directions[0], new_layer.directions[0]
        assert same_bits(new.w_ih, old.w_ih) and same_bits(new.w_hh, old.w_hh)
        assert same_bits(new.b_ih, old.b_ih + old.b_hh)
        assert new.b_hh is None or not new.b_hh.any()


def test_tf_keras_hard_sigmoid_is_refused_by_torch(tmp_path):
    model = lstmconvert.load(KERAS_FIXTURES / "hard_sigmoid_tf_keras.h5")
    out = tmp_path / "hard.pt"
    with pytest.raises(LstmConvertError, match="hard_sigmoid"):
        lstmconvert.save(model, out)
    assert list(tmp_path.iterdir()) == []


def test_cudnn_lstm_to_torch_keeps_both_biases(tmp_path):
    """tf.keras's CuDNNLSTM has PyTorch's two biases: they reach the .pt file bit for bit, and torch
    computes what tf.keras computes from the same weights (loaded into its LSTM twin when the fixture
    was made; CuDNNLSTM itself needs a GPU)."""
    src = KERAS_FIXTURES / "cudnn_tf_keras.h5"
    reference = np.load(src.with_suffix(".ref.npz"))
    model = lstmconvert.load(src)
    out = tmp_path / "cudnn.pt"
    _convert(model, out)
    back = lstmconvert.load(out, batch_first=True, readout="last")
    for old_layer, new_layer in zip(model.layers, back.layers):
        for old, new in zip(old_layer.directions, new_layer.directions):
            assert old.b_hh is not None and old.b_hh.any()
            assert same_bits(new.b_ih, old.b_ih) and same_bits(new.b_hh, old.b_hh)
    actual = lstmconvert.run(out, reference["x"], batch_first=True, readout="last")
    assert np.abs(actual.astype(np.float64) - reference["y"]).max() <= CROSS_ATOL
