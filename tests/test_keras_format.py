"""The Keras format, checked against Keras itself.

References are always computed by a real runtime: Keras 3 (``keras.saving.load_model``) for files
Keras 3 wrote, tf_keras for files tf.keras wrote. Converted files are run the same way and must
reproduce the source's outputs on every real (non-padding) step.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from needs import needs

h5py = pytest.importorskip("h5py")  # reads every Keras file; Keras itself only where a test runs one
ml_dtypes = pytest.importorskip("ml_dtypes")

import lstmconvert
from lstmconvert import Activation, LSTMLayer, UnsupportedError
from lstmconvert.cli import main
from keras_helpers import (
    KERAS_FIXTURES, LENGTHS, batch_for, keras_order, real_steps_max_diff, reverse_real_steps,
)
from factories import same_arrays, same_bits

# Same framework, same weights: Keras reproduces itself to float32 rounding or better.
ATOL = 1e-6


@pytest.fixture(scope="module")
def keras():
    needs("keras")
    from lstmconvert.formats.keras_format.frameworks import import_keras

    return import_keras()


@pytest.fixture(scope="module")
def source():
    """(neutral model, padded batch, the file's own output on it) per fixture, computed once."""
    needs("keras")
    cache = {}

    def get(name: str):
        if name not in cache:
            path = KERAS_FIXTURES / name
            model = lstmconvert.load(path)
            batch = batch_for(model)
            cache[name] = (model, batch, lstmconvert.run(path, batch))
        return cache[name]

    return get


def _save(model, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lstmconvert.PreservationWarning)
        return lstmconvert.save(model, path, **kwargs)


# -- reading ---------------------------------------------------------------------------------------

def test_reading_imports_no_framework():
    names = ["tagger.keras", "tagger.h5", "tagger_tf_keras.h5", "tagger_tf_keras.keras", "bidirectional.keras",
             "classifier.h5", "hard_sigmoid_tf_keras.h5", "cudnn_tf_keras.h5", "keras2_tagger.h5"]
    code = (
        "import json, sys, lstmconvert\n"
        f"for name in {names!r}:\n"
        f"    lstmconvert.load({str(KERAS_FIXTURES)!r} + '/' + name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras', 'torch', 'onnx', 'onnxruntime'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


LOADERS = {  # which Keras opens each fixture (Keras 3 cannot load tf.keras LSTM files)
    "tagger.keras": "keras", "tagger.h5": "keras", "classifier.keras": "keras", "classifier.h5": "keras",
    "bidirectional.keras": "keras", "bidirectional.h5": "keras",
    "functional.keras": "keras", "tagger_folder": "keras",
    "tagger_tf_keras.h5": "tf_keras", "tagger_tf_keras.keras": "tf_keras", "hard_sigmoid_tf_keras.h5": "tf_keras",
    "functional_tf_keras.h5": "tf_keras", "keras2_tagger.h5": "tf_keras",
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_read_weights_equal_keras_own(name, keras):
    """Every array equals, bit for bit, what the writing Keras itself loads from the file."""
    path = KERAS_FIXTURES / name
    if LOADERS[name] == "keras":
        loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    else:
        import tf_keras

        loaded = tf_keras.models.load_model(path, compile=False, safe_mode=True)
    theirs = [w for layer in loaded.layers for w in layer.get_weights()]
    ours = keras_order(lstmconvert.load(path))
    assert len(ours) == len(theirs)
    assert all(same_bits(a, b) for a, b in zip(ours, theirs))


def test_read_structure():
    tagger = lstmconvert.load(KERAS_FIXTURES / "tagger.keras")
    assert (tagger.input_kind, tagger.masked, tagger.readout, tagger.batch_first) == ("tokens", True, "sequence", True)
    assert [layer.bidirectional for layer in tagger.layers] == [False, False]
    assert tagger.head[0].activation == "softmax"
    classifier = lstmconvert.load(KERAS_FIXTURES / "classifier.h5")
    assert (classifier.input_kind, classifier.masked, classifier.mask_value, classifier.readout) == (
        "features", True, 0.0, "last")
    assert classifier.head[0].activation == "sigmoid"
    bidirectional = lstmconvert.load(KERAS_FIXTURES / "bidirectional.h5")
    assert [(layer.bidirectional, layer.merge) for layer in bidirectional.layers] == [(True, "concat"), (True, "ave")]
    # tf.keras saved the same training run as .h5 and .keras: one model
    assert same_arrays(lstmconvert.load(KERAS_FIXTURES / "tagger_tf_keras.h5"),
                       lstmconvert.load(KERAS_FIXTURES / "tagger_tf_keras.keras"))


def test_hints_that_contradict_the_file_are_refused():
    with pytest.raises(UnsupportedError, match="readout"):
        lstmconvert.load(KERAS_FIXTURES / "tagger.keras", readout="last")
    with pytest.raises(UnsupportedError, match="batch-first"):
        lstmconvert.load(KERAS_FIXTURES / "tagger.keras", batch_first=False)


# -- uni -> bi conversion keeps the function -------------------------------------------------------

CONVERSIONS = [
    ("tagger.keras", "copy", "concat", ".keras"),
    ("tagger.keras", "random", "concat", ".h5"),
    ("tagger.h5", "zeros", "sum", ".keras"),
    ("tagger.keras", "zeros", "ave", ".keras"),
    ("classifier.keras", "copy", "concat", ".keras"),
    ("classifier.h5", "zeros", "ave", ".h5"),
    ("functional.keras", "copy", "concat", ".keras"),
]


@pytest.mark.parametrize("name,backward,merge,suffix", CONVERSIONS)
def test_bidirectional_reproduces_source(name, backward, merge, suffix, source, tmp_path):
    model, batch, expected = source(name)
    bi = lstmconvert.to_bidirectional(model, backward=backward, merge=merge, seed=3)
    assert bi.meta["preservation"].status == "exact"
    out = tmp_path / f"bi{suffix}"
    assert lstmconvert.save(bi, out) == [out]
    back = lstmconvert.load(out)
    assert [(layer.bidirectional, layer.merge) for layer in back.layers] == [(True, merge)] * len(model.layers)
    assert same_arrays(back, bi)
    assert real_steps_max_diff(expected, lstmconvert.run(out, batch)) <= ATOL


@pytest.mark.parametrize("name", ["tagger.keras", "classifier.keras"])
def test_backward_direction_starts_at_last_real_step(name, source, tmp_path):
    """The new backward direction, run by Keras on a padded batch, equals the forward LSTM run by Keras
    on each sequence's real steps reversed: padding is skipped, not read."""
    model, batch, _ = source(name)
    single = model.replace(layers=model.layers[:1], head=[]).validate()
    uni, bi = tmp_path / "uni.keras", tmp_path / "bi.keras"
    _save(single, uni)
    _save(lstmconvert.to_bidirectional(single, backward="copy", merge="concat"), bi)
    hidden = single.layers[0].hidden_size
    forward_only = lstmconvert.run(uni, batch)
    on_reversed = lstmconvert.run(uni, reverse_real_steps(batch))
    both = lstmconvert.run(bi, batch)
    assert real_steps_max_diff(forward_only, both[..., :hidden]) <= ATOL
    if single.readout == "last":
        expected_backward = on_reversed
    else:  # step t of the backward pass has seen steps n-1 .. t, i.e. reversed step n-1-t
        expected_backward = reverse_real_steps(on_reversed)
    assert real_steps_max_diff(expected_backward, both[..., hidden:]) <= ATOL


# -- keeping the direction: exact -----------------------------------------------------------------

@pytest.mark.parametrize("name,suffix", [
    ("bidirectional.keras", ".keras"), ("bidirectional.h5", ".keras"), ("tagger.h5", ".keras"),
    ("classifier.keras", ".h5"),
])
def test_keep_direction_is_exact(name, suffix, source, tmp_path):
    model, batch, expected = source(name)
    out = tmp_path / f"copy{suffix}"
    lstmconvert.save(model, out)
    assert same_arrays(lstmconvert.load(out), model)
    actual = lstmconvert.run(out, batch)
    for i, n in enumerate(LENGTHS):  # same runtime, same weights: identical on real steps
        np.testing.assert_array_equal(actual[i, :n] if actual.ndim == 3 else actual[i], expected[i, :n]
                                      if expected.ndim == 3 else expected[i])


def test_functional_hdf5_that_keras_cannot_reload(source, tmp_path):
    """Keras 3 saves a masked Functional model to .h5 but cannot load it back (its mask operations);
    lstmconvert reads it, and the converted file reproduces what Keras computes from the same model
    saved as .keras."""
    model, batch, expected = source("functional.keras")
    from_h5 = lstmconvert.load(KERAS_FIXTURES / "functional.h5")
    assert same_arrays(from_h5, model) and from_h5.masked and from_h5.readout == "last"
    out = tmp_path / "bi.keras"
    lstmconvert.save(lstmconvert.to_bidirectional(from_h5, backward="copy"), out)
    assert real_steps_max_diff(expected, lstmconvert.run(out, batch)) <= ATOL


# -- tf.keras sources ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tagger_tf_keras.h5", "functional_tf_keras.h5"])
def test_tf_keras_source_converts_to_keras3(name, source, tmp_path):
    """A tf.keras .h5 that Keras 3 cannot load is read and written for Keras 3, which reproduces the
    outputs tf_keras computes from the source; a unidirectional one is also widened."""
    model, batch, expected = source(name)
    same = tmp_path / "same.keras"
    lstmconvert.save(model, same)
    assert same_arrays(lstmconvert.load(same), model)
    assert real_steps_max_diff(expected, lstmconvert.run(same, batch)) <= ATOL
    if not model.bidirectional:
        bi = tmp_path / "bi.keras"
        lstmconvert.save(lstmconvert.to_bidirectional(model, backward="copy"), bi)
        assert real_steps_max_diff(expected, lstmconvert.run(bi, batch)) <= ATOL


def test_tf_keras_hard_sigmoid_is_read_as_its_own_function(source, keras, tmp_path):
    """tf.keras's hard_sigmoid is clip(0.2x + 0.5): the parameters read from the file, put into a
    Keras 3 LSTM, reproduce tf_keras's output; Keras 3's own 'hard_sigmoid' does not."""
    model, batch, expected = source("hard_sigmoid_tf_keras.h5")
    gate = model.layers[0].directions[0].activations[0]
    assert gate == Activation("hard_sigmoid", alpha=0.2, beta=0.5)

    def rebuilt(recurrent_activation):
        layers = keras.layers
        net = keras.Sequential([
            keras.Input((None, model.input_size)), layers.Masking(model.mask_value),
            layers.LSTM(model.layers[0].hidden_size, recurrent_activation=recurrent_activation, return_sequences=True),
            layers.Dense(1, activation=model.head[0].activation),
        ])
        net.set_weights(keras_order(model))
        return np.asarray(net(batch, training=False))

    as_read = rebuilt(lambda x: keras.ops.clip(gate.alpha * x + gate.beta, 0.0, 1.0))
    assert real_steps_max_diff(expected, as_read) <= ATOL
    assert real_steps_max_diff(expected, rebuilt("hard_sigmoid")) > 1e-3  # the trap is real

    out = tmp_path / "hard.keras"
    with pytest.raises(UnsupportedError, match=r"hard_sigmoid clip\(0\.2x\+0\.5\)"):
        lstmconvert.save(model, out)
    assert not out.exists()


def test_keras3_hard_sigmoid_and_own_backward_activations_round_trip(keras, tmp_path):
    """Keras 3's hard_sigmoid is clip(x/6 + 0.5); a Bidirectional whose backward layer has its own
    activations keeps them through read and write, and Keras computes the same from both files."""
    layers = keras.layers
    backward = layers.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid", go_backwards=True,
                           return_sequences=True)
    net = keras.Sequential([keras.Input((None, 2)), layers.Masking(0.0),
                            layers.Bidirectional(layers.LSTM(3, return_sequences=True), backward_layer=backward)])
    rng = np.random.default_rng(4)
    net.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in net.get_weights()])
    src = tmp_path / "k3.keras"
    net.save(src)
    model = lstmconvert.load(src)
    forward_acts, backward_acts = (d.activations for d in model.layers[0].directions)
    assert forward_acts == (Activation("sigmoid"), Activation("tanh"), Activation("tanh"))
    assert backward_acts == (Activation("hard_sigmoid", alpha=1 / 6, beta=0.5), Activation("relu"), Activation("relu"))
    out = tmp_path / "copy.keras"
    lstmconvert.save(model, out)
    assert [d.activations for d in lstmconvert.load(out).layers[0].directions] == [forward_acts, backward_acts]
    batch = batch_for(model)
    np.testing.assert_array_equal(lstmconvert.run(out, batch), lstmconvert.run(src, batch))


# -- backward-only layers --------------------------------------------------------------------------

def test_backward_only_layer_in_time_order(source, tmp_path):
    """A backward-only layer whose output is in time order (ONNX direction='reverse') is written as
    go_backwards + flip; Keras reproduces the forward layer run on time-reversed input."""
    model, batch, _ = source("classifier.keras")
    forward = model.replace(masked=False, readout="sequence", head=[]).validate()
    backward = copy.deepcopy(forward)
    backward.layers = [LSTMLayer(backward.layers[0].directions, reverse=True, reversed_output=False)]
    fwd_file, bwd_file = tmp_path / "fwd.keras", tmp_path / "bwd.keras"
    lstmconvert.save(forward, fwd_file)
    lstmconvert.save(backward, bwd_file)
    back = lstmconvert.load(bwd_file)
    assert (back.layers[0].reverse, back.layers[0].reversed_output) == (True, False)
    expected = lstmconvert.run(fwd_file, batch[:, ::-1])[:, ::-1]
    np.testing.assert_allclose(lstmconvert.run(bwd_file, batch), expected, rtol=0, atol=ATOL)
    with pytest.raises(UnsupportedError, match="flip"):
        lstmconvert.save(backward, tmp_path / "bwd.h5")


# -- dtypes ----------------------------------------------------------------------------------------

def _cast(model, dtype):
    model = copy.deepcopy(model)
    for layer in model.layers:
        for direction in layer.directions:
            for name, array in direction.arrays().items():
                setattr(direction, name, array.astype(dtype))
    for dense in model.head:
        dense.weight, dense.bias = dense.weight.astype(dtype), dense.bias.astype(dtype)
    return model


@pytest.mark.parametrize("dtype,suffix", [(np.float16, ".h5"), (ml_dtypes.bfloat16, ".keras")])
def test_low_precision_is_kept(dtype, suffix, source, tmp_path):
    model, batch, expected = source("classifier.keras")
    low = _cast(model, dtype)
    out = tmp_path / f"low{suffix}"
    lstmconvert.save(low, out)
    back = lstmconvert.load(out)
    assert back.dtype == np.dtype(dtype) and same_arrays(back, low)
    actual = lstmconvert.run(out, batch)
    assert actual.dtype == np.dtype(dtype)
    # rounding the weights to 8 (bfloat16) or 11 (float16) significant bits moves the output a little
    assert real_steps_max_diff(expected, actual) <= (5e-2 if dtype is ml_dtypes.bfloat16 else 5e-3)


def test_bfloat16_hdf5_is_refused(source, tmp_path):
    model, _, _ = source("classifier.keras")
    out = tmp_path / "low.h5"
    with pytest.raises(UnsupportedError, match="bfloat16"):
        lstmconvert.save(_cast(model, ml_dtypes.bfloat16), out)
    assert not out.exists()


# -- what the writer refuses -----------------------------------------------------------------------

def _refusal_cases(model):
    def edit(change):
        edited = copy.deepcopy(model)
        change(edited)
        return edited

    def proj(m):
        d = m.layers[-1].directions[0]
        d.w_hr = np.ones((2, d.hidden_size), d.w_ih.dtype)
        d.w_hh = d.w_hh[:, :2]
        m.head = []

    def peephole(m):
        d = m.layers[0].directions[0]
        d.peephole = np.zeros(3 * d.hidden_size, d.w_ih.dtype)

    def clip(m):
        m.layers[0].clip = 3.0

    def input_forget(m):
        m.layers[0].input_forget = True

    def split_cell(m):
        d = m.layers[0].directions[0]
        d.activations = (d.activations[0], Activation("tanh"), Activation("relu"))

    def unknown_activation(m):
        d = m.layers[0].directions[0]
        d.activations = (Activation("elu", alpha=0.5), d.activations[1], d.activations[2])

    return {
        "projection": (edit(proj), "projection"),
        "peephole": (edit(peephole), "peephole"),
        "clip": (edit(clip), "clip"),
        "input_forget": (edit(input_forget), "input-forget"),
        "split_cell": (edit(split_cell), "one activation"),
        "elu_alpha": (edit(unknown_activation), r"elu\(alpha=0\.5\)"),
    }


@pytest.mark.parametrize("case", ["projection", "peephole", "clip", "input_forget", "split_cell", "elu_alpha"])
def test_writer_refuses_what_keras_cannot_compute(case, source, tmp_path):
    model, _, _ = source("tagger.keras")
    edited, message = _refusal_cases(model)[case]
    out = tmp_path / "refused.keras"
    with pytest.raises(UnsupportedError, match=message):
        lstmconvert.save(edited.validate(), out)
    assert list(tmp_path.iterdir()) == []


# -- bad and unsupported files through the CLI ------------------------------------------------------

def _zip(path, members: dict):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _bad_not_a_zip(tmp):
    (tmp / "bad.keras").write_bytes(b"certainly not a zip archive")
    return tmp / "bad.keras"


def _bad_truncated(tmp):
    data = (KERAS_FIXTURES / "tagger.h5").read_bytes()
    (tmp / "cut.h5").write_bytes(data[: len(data) // 3])
    return tmp / "cut.h5"


def _bad_no_config(tmp):
    return _zip(tmp / "empty.keras", {"metadata.json": json.dumps({"keras_version": "3.15.1"})})


def _bad_no_lstm(tmp):
    weights = tmp / "w.h5"
    with h5py.File(weights, "w") as h5:
        h5.create_group("layers/dropout/vars")
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, None, 3], "dtype": "float32", "name": "in"}},
        {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.5}}]}}
    return _zip(tmp / "dropout_only.keras", {"config.json": json.dumps(config),
                                           "metadata.json": json.dumps({"keras_version": "3.15.1"}),
                                           "model.weights.h5": weights.read_bytes()})


def _bad_npz(tmp):
    with zipfile.ZipFile(KERAS_FIXTURES / "tagger.keras") as archive:
        config = archive.read("config.json")
    return _zip(tmp / "npz.keras", {"config.json": config, "model.weights.npz": b"PK"})


def _bad_weights_only(tmp):
    with h5py.File(tmp / "weights_only.h5", "w") as h5:
        h5.attrs["layer_names"] = [b"lstm"]
    return tmp / "weights_only.h5"


def _bad_truncated_archive(tmp):
    data = (KERAS_FIXTURES / "tagger.keras").read_bytes()
    (tmp / "cut.keras").write_bytes(data[: len(data) // 2])
    return tmp / "cut.keras"


def _bad_plain_hdf5(tmp):
    with h5py.File(tmp / "data.h5", "w") as h5:
        h5["x"] = np.arange(3.0)
    return tmp / "data.h5"


def _bad_half_written(tmp):
    """What a saver that failed halfway leaves: the config, but not every layer's weights."""
    (tmp / "half.h5").write_bytes((KERAS_FIXTURES / "tagger.h5").read_bytes())
    with h5py.File(tmp / "half.h5", "a") as h5:
        del h5["model_weights/lstm_1"]
    return tmp / "half.h5"


def _saved_by_keras(tmp, name, build):
    """A Keras 3 model built by ``build(keras)`` and saved as ``name`` (save_weights for .weights.h5)."""
    needs("keras")
    from lstmconvert.formats.keras_format.frameworks import import_keras

    keras = import_keras()
    net = build(keras, keras.layers)
    path = tmp / name
    net.save_weights(path) if name.endswith(".weights.h5") else net.save(path)
    return path


def _bad_keras3_weights_only(tmp):
    return _saved_by_keras(tmp, "model.weights.h5", lambda keras, layers: keras.Sequential(
        [keras.Input((None, 3)), layers.LSTM(2)]))


def _bad_mixed_precision(tmp):
    return _saved_by_keras(tmp, "mixed.keras", lambda keras, layers: keras.Sequential(
        [keras.Input((None, 3)), layers.LSTM(2, dtype="mixed_float16"), layers.Dense(1, dtype="float32")]))


def _bad_stacked_cells(tmp):
    return _saved_by_keras(tmp, "stacked.keras", lambda keras, layers: keras.Sequential(
        [keras.Input((None, 3)), layers.RNN([layers.LSTMCell(2), layers.LSTMCell(2)])]))


def _bad_softmax_over_time(tmp):
    return _saved_by_keras(tmp, "softmax_time.keras", lambda keras, layers: keras.Sequential(
        [keras.Input((None, 3)), layers.LSTM(2, return_sequences=True), layers.Dense(2), layers.Softmax(axis=1)]))


def _bad_flatten_sequence(tmp):
    return _saved_by_keras(tmp, "flatten.keras", lambda keras, layers: keras.Sequential(
        [keras.Input((4, 3)), layers.LSTM(2, return_sequences=True), layers.Flatten(), layers.Dense(1)]))


def _bad_masked_nested_functional(tmp):
    def build(keras, layers):
        inner_input = keras.Input((None, 3))
        inner = keras.Model(inner_input, layers.LSTM(2)(inner_input), name="inner")
        outer_input = keras.Input((None, 3))
        return keras.Model(outer_input, inner(layers.Masking()(outer_input)))

    return _saved_by_keras(tmp, "nested_mask.keras", build)


def _bad_nested_conv(tmp):
    return _saved_by_keras(tmp, "nested_conv.keras", lambda keras, layers: keras.Sequential([
        keras.Input((None, 3)),
        keras.Sequential([layers.Conv1D(2, 3, name="conv"), layers.LSTM(2)], name="encoder"),
    ]))


def _bad_lambda_activation(tmp):
    with warnings.catch_warnings():  # Keras warns that a lambda is unsafe to serialize
        warnings.simplefilter("ignore")
        return _saved_by_keras(tmp, "lambda.keras", lambda keras, layers: keras.Sequential(
            [keras.Input((None, 3)), layers.LSTM(2, activation=lambda x: 2 * x, name="lam")]))


BAD_FILES = {
    # Outside the neutral shape: .keras -> .keras turns to in-place widening, which finds nothing to widen;
    # to another format the reader's refusal stands.
    "gru": (lambda tmp: KERAS_FIXTURES / "gru.keras", "no unidirectional top-level LSTM to widen"),
    "gru_to_onnx": (lambda tmp: KERAS_FIXTURES / "gru.keras", "layer 'gru' (GRU) is not supported"),
    "branch_to_onnx": (lambda tmp: KERAS_FIXTURES / "branch.keras", "layer 'merge' (Add) takes 2 inputs"),
    "not_a_zip": (_bad_not_a_zip, "not a zip archive"),
    "truncated": (_bad_truncated, "HDF5"),
    "no_config": (_bad_no_config, "no config.json"),
    "no_lstm": (_bad_no_lstm, "no LSTM layer"),
    "npz": (_bad_npz, "never unpickles"),
    "weights_only": (_bad_weights_only, "weights-only"),
    "keras3_weights_only": (_bad_keras3_weights_only, "save_weights) holds no model architecture"),
    "truncated_archive": (_bad_truncated_archive, "damaged or truncated .keras archive"),
    "plain_hdf5": (_bad_plain_hdf5, "not a Keras full-model HDF5 file"),
    "half_written": (_bad_half_written, "no weights group model_weights/lstm_1"),
    "mixed_precision": (_bad_mixed_precision, "rebuild the model under the 'float32' policy"),
    "stacked_cells": (_bad_stacked_cells, "StackedRNNCells"),
    "softmax_over_time_to_onnx": (_bad_softmax_over_time, "normalizes over axis 1"),
    "flatten_sequence_to_onnx": (_bad_flatten_sequence, "flattens the time steps"),
    "masked_nested_functional": (_bad_masked_nested_functional, "does not pass it on to its layers"),
    "nested_conv": (_bad_nested_conv, "models used as layers, here 'encoder', are kept as they are"),
    "nested_conv_to_onnx": (_bad_nested_conv, "layer 'conv' (Conv1D) in model 'encoder' is not supported"),
    "lambda_activation": (_bad_lambda_activation, "layer 'lam' (LSTM) activation: activation is a Python lambda"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_refuses_bad_files_in_one_line(case, tmp_path, capsys):
    make, expected = BAD_FILES[case]
    src = make(tmp_path)
    capsys.readouterr()  # whatever Keras printed while making the file
    before = set(tmp_path.iterdir())
    dst = tmp_path / ("out.onnx" if case.endswith("_to_onnx") else "out.keras")
    assert main(["convert", str(src), "-o", str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lstmconvert: error: ") and str(src) in err
    assert expected in err
    assert set(tmp_path.iterdir()) == before  # nothing written, no staging folder left


# -- folders ------------------------------------------------------------------------------------------

def test_folder_saved_with_zipped_false_converts_like_its_archive(tmp_path, capsys):
    """``model.save(folder, zipped=False)`` writes the archive's members as files: read, converted and
    verified (Keras runs the folder) like the .keras archive of the same model."""
    folder = KERAS_FIXTURES / "tagger_folder"
    assert same_arrays(lstmconvert.load(folder), lstmconvert.load(KERAS_FIXTURES / "tagger.keras"))
    dst = tmp_path / "bi.keras"
    assert main(["convert", str(folder), "-o", str(dst)]) == 0
    assert main(["verify", str(folder), str(dst)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS: DST computes what SRC computes")


@pytest.mark.parametrize("content, message", [((), "a folder, not a model file"),
                                              (("saved_model.pb",), "TensorFlow SavedModel folder")])
def test_other_folders_are_refused_in_one_line(tmp_path, capsys, content, message):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in content:
        (folder / name).write_bytes(b"\x08\x01")
    assert main(["convert", str(folder), "-o", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder) in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_verify_tests_a_fixed_length_model_at_its_length(tmp_path):
    """A Keras model whose input records its length (``Input((T, F))``, unrolled LSTM) runs only at T:
    verify reads T from the file and tests there."""
    src = _saved_by_keras(tmp_path, "fixed.keras", lambda keras, layers: keras.Sequential(
        [keras.Input((7, 4)), layers.LSTM(5, return_sequences=True, unroll=True), layers.Dense(2)]))
    assert lstmconvert.load(src).meta["fixed_sizes"] == {"steps": 7}
    dst = tmp_path / "bi.onnx"
    _save(lstmconvert.to_bidirectional(lstmconvert.load(src)), dst)
    report = lstmconvert.verify(src, dst)
    assert report.passed and report.inputs_note == "length 7, the only one SRC runs at"
