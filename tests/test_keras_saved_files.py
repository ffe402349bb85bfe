"""Keras files the way training scripts write them: nested models, RNN(LSTMCell), CuDNNLSTM, head
layers written as their own layers, Keras 2.15 files, repacked archives.

Every model here is saved by Keras itself (built in this process with Keras 3, or committed fixtures
saved by tf.keras 2.21 / Keras 2.15 with the outputs that Keras computed). Converted files are run in
Keras and compared with those outputs on every real (non-padding) step.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from needs import needs

h5py = pytest.importorskip("h5py")

import lstmconvert
from lstmconvert import LstmConvertError, UnsupportedError
from keras_helpers import KERAS_FIXTURES, batch_for, keras_order, real_steps_max_diff
from factories import same_arrays, same_bits

# Keras against Keras (same weights, possibly another TensorFlow): float32 rounding at most.
ATOL = 1e-6


@pytest.fixture(scope="module")
def keras():
    needs("keras")
    from lstmconvert.formats.keras_format.frameworks import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(7)
    return keras


def _randomize(net, seed: int = 0) -> None:
    """Weights with every entry nonzero (biases too), so a misplaced value changes the output."""
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in net.get_weights()])


def _keras_output(net, model):
    """What Keras computes from the model in memory, on the padded batch the tests use."""
    return np.asarray(net(batch_for(model), training=False))


def _converted_output(model, out, **kwargs):
    """Write ``model`` (kept, or widened with kwargs) to ``out`` and run that file in Keras."""
    if kwargs:
        model = lstmconvert.to_bidirectional(model, **kwargs)
    lstmconvert.save(model, out)
    return lstmconvert.run(out, batch_for(model))


# -- models used as layers -------------------------------------------------------------------------

def _masked_functional_with_nested(keras):
    """Input -> Masking -> Sequential encoder [LSTM, LSTM(last)] -> Sequential head [Dense, Dense].

    The encoder's first LSTM is frozen: in HDF5, Keras then lists its weights after the second LSTM's
    (trainable first), so a reader going by position would swap them.
    """
    layers = keras.layers
    encoder = keras.Sequential([layers.LSTM(4, return_sequences=True, name="enc_1"), layers.LSTM(3, name="enc_2")],
                               name="encoder")
    head = keras.Sequential([layers.Dense(5, activation="relu", name="hidden"), layers.Dense(2, name="logits")],
                            name="head")
    inputs = keras.Input((None, 3))
    net = keras.Model(inputs, head(encoder(layers.Masking()(inputs))), name="outer")
    _randomize(net)
    encoder.layers[0].trainable = False
    return net


def _sequential_with_nested_embedding(keras):
    """Sequential [Input, Sequential [Embedding(mask_zero), LSTM(last)], Dense]."""
    layers = keras.layers
    inner = keras.Sequential([keras.Input((None,), dtype="int32"), layers.Embedding(9, 4, mask_zero=True),
                              layers.LSTM(3)], name="encoder")
    net = keras.Sequential([keras.Input((None,), dtype="int32"), inner, layers.Dense(2, activation="softmax")])
    _randomize(net, 1)
    return net


@pytest.mark.parametrize("build", [_masked_functional_with_nested, _sequential_with_nested_embedding])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_nested_models_are_flattened(build, suffix, keras, tmp_path):
    """A model used as a layer is read as its chain of layers, its weights found where Keras put them,
    and the mask flows into it as in Keras: the widened model reproduces Keras's readout at each
    sequence's last real step (an unmasked reading would run over the padding)."""
    net = build(keras)
    src = tmp_path / f"nested{suffix}"
    net.save(src)
    if build is _masked_functional_with_nested and suffix == ".h5":
        with h5py.File(src) as h5:  # the frozen layer's weights really come last
            assert str(h5["model_weights/encoder"].attrs["weight_names"][-1]).endswith("enc_1/lstm_cell/bias")
    model = lstmconvert.load(src)
    assert model.masked and model.readout == "last"
    assert [w.shape for w in keras_order(model)] == [w.shape for w in net.get_weights()]
    assert all(same_bits(a, b) for a, b in zip(keras_order(model), net.get_weights()))
    expected = _keras_output(net, model)
    assert real_steps_max_diff(expected, _converted_output(model, tmp_path / "bi.keras", backward="copy")) <= ATOL


def test_mask_dropped_at_a_nested_model_boundary_is_refused(keras, tmp_path):
    """Keras 3 does not pass a nested model's mask on: the LSTM after it runs over the padding."""
    layers = keras.layers
    embedder = keras.Sequential([keras.Input((None,), dtype="int32"), layers.Embedding(9, 4, mask_zero=True)],
                                name="embedder")
    inputs = keras.Input((None,), dtype="int32")
    src = tmp_path / "dropped.keras"
    keras.Model(inputs, layers.LSTM(3, name="lstm_after")(embedder(inputs))).save(src)
    with pytest.raises(UnsupportedError, match="'lstm_after' .* not given the input's mask"):
        lstmconvert.load(src)


# -- RNN(LSTMCell) -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_rnn_of_lstm_cell_is_an_lstm(suffix, keras, tmp_path):
    layers = keras.layers
    net = keras.Sequential([
        keras.Input((None, 3)), layers.Masking(),
        layers.RNN(layers.LSTMCell(4, activation="softsign"), return_sequences=True),
        layers.Bidirectional(layers.RNN(layers.LSTMCell(3), return_sequences=True)),
        layers.Dense(2),
    ])
    _randomize(net, 2)
    src = tmp_path / f"cells{suffix}"
    net.save(src)
    model = lstmconvert.load(src)
    assert [layer.bidirectional for layer in model.layers] == [False, True]
    assert str(model.layers[0].directions[0].activations[1]) == "softsign"
    assert all(same_bits(a, b) for a, b in zip(keras_order(model), net.get_weights()))
    expected = _keras_output(net, model)
    assert real_steps_max_diff(expected, _converted_output(model, tmp_path / "copy.keras")) <= ATOL


# -- head layers written as layers -----------------------------------------------------------------

def test_flatten_relu_and_softmax_layers_fold_into_the_head(keras, tmp_path):
    layers = keras.layers
    net = keras.Sequential([
        keras.Input((None, 3)), layers.Masking(), layers.LSTM(4), layers.Flatten(),
        layers.Dense(5), layers.ReLU(), layers.Dense(3), layers.Softmax(),
    ])
    _randomize(net, 3)
    src = tmp_path / "heads.keras"
    net.save(src)
    model = lstmconvert.load(src)
    assert [dense.activation for dense in model.head] == ["relu", "softmax"]
    expected = _keras_output(net, model)
    assert real_steps_max_diff(expected, _converted_output(model, tmp_path / "copy.h5")) <= ATOL


# -- CuDNNLSTM (tf.keras) ----------------------------------------------------------------------------

CUDNN = KERAS_FIXTURES / "cudnn_tf_keras.h5"


def test_cudnn_weights_equal_tf_keras_own_conversion():
    """tf.keras converts CuDNNLSTM weights for an LSTM when loading them; the kernels lstmconvert reads
    are those, bit for bit, and its two biases add up to tf.keras's single one."""
    needs("keras", "tf_keras")
    import tf_keras

    layers = tf_keras.layers
    plain = tf_keras.Sequential([
        layers.LSTM(3, return_sequences=True, input_shape=(None, 2), name="cudnn"),
        layers.Bidirectional(layers.LSTM(3), name="bi_cudnn"), layers.Dense(2, name="head"),
    ])
    plain.load_weights(CUDNN)
    theirs = plain.get_weights()
    model = lstmconvert.load(CUDNN)
    directions = [d for layer in model.layers for d in layer.directions]
    assert len(directions) == 3
    for k, direction in enumerate(directions):
        kernel, recurrent, bias = theirs[3 * k: 3 * k + 3]
        assert same_bits(direction.w_ih.T, kernel) and same_bits(direction.w_hh.T, recurrent)
        assert direction.b_hh is not None and direction.b_hh.any()  # cuDNN's second bias is kept
        assert same_bits(direction.b_ih + direction.b_hh, bias)


def test_cudnn_file_converts_and_runs_in_keras3(tmp_path):
    needs("keras")
    reference = np.load(CUDNN.with_suffix(".ref.npz"))
    model = lstmconvert.load(CUDNN)
    out = tmp_path / "plain.keras"
    lstmconvert.save(model, out)
    np.testing.assert_allclose(lstmconvert.run(out, reference["x"]), reference["y"], rtol=0, atol=ATOL)
    with pytest.raises(LstmConvertError, match="CuDNNLSTM layers .*cudnn, bi_cudnn.* GPU"):
        lstmconvert.run(CUDNN, reference["x"])  # no CPU kernel: a clear message, not TensorFlow's


# -- Keras 2.15 ------------------------------------------------------------------------------------

def test_keras2_file_runs_as_keras2_computed_it(tmp_path):
    """A Keras 2.15 .h5 (trained, with optimizer weights) runs in tf_keras and, converted, in Keras 3,
    reproducing the outputs Keras 2.15 computed before saving it."""
    needs("keras", "tf_keras")
    src = KERAS_FIXTURES / "keras2_tagger.h5"
    reference = np.load(src.with_suffix(".ref.npz"))
    model = lstmconvert.load(src)
    assert model.meta["keras"]["keras_version"] == "2.15.0" and model.masked
    assert real_steps_max_diff(reference["y"], lstmconvert.run(src, reference["x"])) <= ATOL
    out = tmp_path / "keras3.keras"
    lstmconvert.save(model, out)
    assert real_steps_max_diff(reference["y"], lstmconvert.run(out, reference["x"])) <= ATOL


# -- names and containers ----------------------------------------------------------------------------

def test_long_names_split_over_several_hdf5_attributes(keras, tmp_path):
    """Over 64 KiB of names: Keras splits layer_names and weight_names into name0, name1, ..."""
    layers = keras.layers
    net = keras.Sequential(
        [keras.Input((None, 3))] + [layers.Dropout(0.1, name=f"drop_{k}_" + "x" * 2000) for k in range(35)]
        + [layers.LSTM(4, return_sequences=True, name="l" * 25000), layers.Dense(2)]
    )
    _randomize(net, 4)
    src = tmp_path / "long.h5"
    net.save(src)
    with h5py.File(src) as h5:
        assert "layer_names0" in h5["model_weights"].attrs
        assert "weight_names0" in h5["model_weights/" + "l" * 25000].attrs
    model = lstmconvert.load(src)
    assert all(same_bits(a, b) for a, b in zip(keras_order(model), net.get_weights()))


def test_tf_keras_slashes_in_names_are_written_as_keras3_names(tmp_path):
    """tf.keras allowed "/" in layer names, Keras 3 rejects it: the writer replaces it."""
    needs("keras")
    model = lstmconvert.load(KERAS_FIXTURES / "classifier.keras")
    model.meta["keras"]["names"]["layers"][0]["name"] = "encoder/lstm"
    out = tmp_path / "renamed.keras"
    lstmconvert.save(model, out)
    back = lstmconvert.load(out)
    assert back.meta["keras"]["names"]["layers"][0]["name"] == "encoder_lstm" and same_arrays(back, model)


def _repack(src, dst, drop=(), add=None):
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name not in drop:
                new.writestr(name, old.read(name))
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return dst


@pytest.mark.parametrize("name", ["tagger.keras", "tagger_tf_keras.keras"])
def test_archive_without_metadata_or_with_assets(name, tmp_path):
    """Without metadata.json, tf.keras's archive is still recognised (its LSTM configs carry
    time_major) and runs in tf_keras; an assets/ folder is ignored."""
    needs("keras", "tf_keras")
    src = KERAS_FIXTURES / name
    original = lstmconvert.load(src)
    bare = _repack(src, tmp_path / "bare.keras", drop=("metadata.json",))
    with_assets = _repack(src, tmp_path / "assets.keras", add={"assets/vocabulary.txt": "a\nb\n"})
    for path in (bare, with_assets):
        assert same_arrays(lstmconvert.load(path), original)
    batch = batch_for(original)
    np.testing.assert_array_equal(lstmconvert.run(bare, batch), lstmconvert.run(src, batch))
