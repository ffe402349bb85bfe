"""ONNX <-> PyTorch and ONNX <-> Keras: the converted file, run in its own framework's runtime,
reproduces what the source computes in its own (torch, Keras, onnxruntime).

Tolerance: the runtimes sum gate pre-activations in different orders (and Keras folds the two
biases into one), so float32 outputs agree to a few ulps of the activations, not bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from needs import needs

needs("onnx", "keras-read")  # every test reads or runs ONNX; the rest needs what each test names

import onnx  # noqa: E402

import lstmconvert  # noqa: E402
from lstmconvert.cli import main

from keras_helpers import KERAS_FIXTURES, batch_for, real_steps_max_diff
from onnx_helpers import FIXTURES as ONNX_FIXTURES
from onnx_helpers import ROOT, assert_bits_equal, lstm_nodes, node_attributes

TORCH_FIXTURES = ROOT / "fixtures" / "torch"
CROSS_ATOL = 1e-5


def load(path: Path, **hints):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lstmconvert.load(path, **hints)


def run(path: Path, batch: np.ndarray, **hints) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(lstmconvert.run(path, batch, **hints), dtype=np.float64)


def save(model, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmconvert.save(model, path)


# -- into ONNX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,hints,backward,merge", [
    ("tagger.pt", {}, "copy", "concat"),
    ("classifier_last.pt", {"readout": "last"}, "zeros", "sum"),
])
def test_torch_to_bidirectional_onnx_reproduces_torch(name, hints, backward, merge, tmp_path):
    needs("torch")
    src = TORCH_FIXTURES / name
    model = load(src, **hints)
    batch = batch_for(model)  # unmasked torch models: every step is real
    expected = run(src, batch, **hints)
    out = tmp_path / "bi.onnx"
    save(lstmconvert.to_bidirectional(model, backward=backward, merge=merge), out)
    assert [node_attributes(n)["direction"] for n in lstm_nodes(out)] == ["bidirectional"] * len(model.layers)
    actual = run(out, batch)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= CROSS_ATOL


@pytest.mark.parametrize("name,backward,merge", [
    ("tagger.keras", "copy", "concat"),
    ("classifier.h5", "zeros", "ave"),
    ("bidirectional.keras", None, None),
    ("hard_sigmoid_tf_keras.h5", "copy", "concat"),
])
def test_keras_to_onnx_reproduces_keras(name, backward, merge, tmp_path):
    """Masked Keras models, right-padded batches of mixed lengths: real steps must agree."""
    needs("keras", *(["tf_keras"] if "tf_keras" in name else []))
    src = KERAS_FIXTURES / name
    model = load(src)
    batch = batch_for(model)
    expected = run(src, batch)
    if backward is not None:
        model = lstmconvert.to_bidirectional(model, backward=backward, merge=merge)
    out = tmp_path / "converted.onnx"
    save(model, out)
    assert real_steps_max_diff(expected, run(out, batch)) <= CROSS_ATOL


def test_tf_keras_hard_sigmoid_becomes_onnx_hard_sigmoid_alpha_0_2(tmp_path):
    out = tmp_path / "hs.onnx"
    save(load(KERAS_FIXTURES / "hard_sigmoid_tf_keras.h5"), out)
    attrs = node_attributes(lstm_nodes(out)[0])
    assert attrs["activations"][0] == b"HardSigmoid" or attrs["activations"][0] == "HardSigmoid"
    assert np.float32(attrs["activation_alpha"][0]) == np.float32(0.2)
    assert np.float32(attrs["activation_beta"][0]) == np.float32(0.5)


def test_keras3_hard_sigmoid_becomes_onnx_hard_sigmoid_alpha_one_sixth(tmp_path):
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6: alpha 1/6, not tf.keras's 0.2."""
    needs("keras")
    import keras
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((None, 3)),
                              keras.layers.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True),
                              keras.layers.Dense(2)])
    src = tmp_path / "hs3.keras"
    model.save(src)
    batch = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    expected = np.asarray(model.predict(batch, verbose=0), dtype=np.float64)
    out = tmp_path / "hs3.onnx"
    save(load(src), out)
    attrs = node_attributes(lstm_nodes(out)[0])
    assert np.float32(attrs["activation_alpha"][0]) == np.float32(1 / 6)
    assert np.abs(run(out, batch) - expected).max() <= CROSS_ATOL


# -- out of ONNX ---------------------------------------------------------------------------------------
ONNX_SOURCES = ["torch_tagger_ts", "torch_classifier_ts", "torch_bi_tagger_ts", "torch_packed_ts", "tf_tagger",
                "tf_bi_classifier",
                # exporter quirks: unoptimized dynamo with states, Keras 3's export, tf2onnx's 'ave'
                "quirk_dynamo_unoptimized_states", "quirk_keras3_export", "quirk_tf_bidirectional_ave",
                "quirk_ts_bidirectional_manual_last"]


def _onnx_batch(name: str) -> np.ndarray:
    inputs = np.load(ONNX_FIXTURES / f"{name}.ref.npz")["inputs"]
    return inputs.astype(np.int64) if inputs.dtype.kind in "iu" else inputs


@pytest.mark.parametrize("name", ONNX_SOURCES)
@pytest.mark.parametrize("target", [".pt", ".keras"])
def test_onnx_to_framework_reproduces_onnxruntime(name, target, tmp_path):
    needs({".pt": "torch", ".keras": "keras"}[target])
    src = ONNX_FIXTURES / f"{name}.onnx"
    batch = _onnx_batch(name)
    expected = run(src, batch)
    out = tmp_path / f"converted{target}"
    save(load(src), out)
    actual = run(out, batch)
    if name == "torch_packed_ts":  # masked: padding outputs are unspecified across frameworks
        real = batch != 0
        assert np.abs(actual[real] - expected[real]).max() <= CROSS_ATOL
    else:
        assert np.abs(actual - expected).max() <= CROSS_ATOL


def test_onnx_to_keras_widened_reproduces_onnxruntime(tmp_path):
    needs("keras")
    src = ONNX_FIXTURES / "tf_tagger.onnx"
    batch = _onnx_batch("tf_tagger")
    out = tmp_path / "bi.keras"
    save(lstmconvert.to_bidirectional(load(src)), out)
    assert all(layer.bidirectional for layer in load(out).layers)
    assert np.abs(run(out, batch) - run(src, batch)).max() <= CROSS_ATOL


def test_weights_survive_onnx_to_torch_to_onnx_bit_exact(tmp_path):
    needs("torch")
    source = load(ONNX_FIXTURES / "torch_bi_tagger_ts.onnx")
    save(source, tmp_path / "mid.pt")
    save(load(tmp_path / "mid.pt"), tmp_path / "back.onnx")
    back = load(tmp_path / "back.onnx")
    arrays = back.arrays()
    assert sorted(arrays) == sorted(source.arrays())
    for name, array in source.arrays().items():
        assert_bits_equal(arrays[name], array, name)
    # And the ONNX initializers themselves equal the source file's W/R/B.
    for old, new in zip(lstm_nodes(ONNX_FIXTURES / "torch_bi_tagger_ts.onnx"), lstm_nodes(tmp_path / "back.onnx")):
        old_graph = onnx.load(str(ONNX_FIXTURES / "torch_bi_tagger_ts.onnx")).graph
        new_graph = onnx.load(str(tmp_path / "back.onnx")).graph
        old_init = {t.name: onnx.numpy_helper.to_array(t) for t in old_graph.initializer}
        new_init = {t.name: onnx.numpy_helper.to_array(t) for t in new_graph.initializer}
        for slot in (1, 2, 3):
            assert_bits_equal(new_init[new.input[slot]], old_init[old.input[slot]], f"LSTM input {slot}")


# -- what other frameworks cannot carry ------------------------------------------------------------------
@pytest.mark.parametrize("name,target,reason", [
    ("handmade_peephole_clip", ".pt", "peephole"),
    ("handmade_peephole_clip", ".keras", "clip"),
])
def test_onnx_only_features_are_refused_by_other_writers(name, target, reason, tmp_path, capsys):
    needs({".pt": "torch", ".keras": "keras-read"}[target])  # refused before Keras is imported
    code = main(["convert", str(ONNX_FIXTURES / f"{name}.onnx"), "-o", str(tmp_path / f"out{target}"),
                 "--keep-direction"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and reason in err.lower(), err
    assert not list(tmp_path.iterdir())


def test_torch_projection_is_refused_for_onnx(tmp_path, capsys):
    needs("torch")
    code = main(["convert", str(TORCH_FIXTURES / "tagger_proj.pt"), "-o", str(tmp_path / "out.onnx"), "--keep-direction"])
    err = capsys.readouterr().err
    assert code == 2 and "projection" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("src,absent", [
    (TORCH_FIXTURES / "tagger.pt", "tensorflow"),
    (KERAS_FIXTURES / "tagger.keras", "torch"),
])
def test_conversion_to_onnx_imports_no_third_framework(src, absent, tmp_path):
    needs("torch" if src.suffix == ".pt" else "keras-read")
    code = ("import sys; from lstmconvert.cli import main; "
            f"rc = main(['convert', sys.argv[1], '-o', sys.argv[2]]); "
            f"sys.exit(rc or (3 if {absent!r} in sys.modules else 0))")
    result = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "out.onnx")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
