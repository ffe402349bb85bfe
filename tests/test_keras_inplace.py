"""In-place widening of Keras models of any shape (``convert`` on files outside the neutral shape).

Every converted file is loaded with ``keras.saving.load_model(safe_mode=True)`` and run by Keras on
the batch stored in the fixture's ``.ref.npz``; its outputs are compared with the outputs the source
framework (Keras 3 or tf.keras) computed from the source model when the fixture was made
(``fixtures/make_keras_inplace_fixtures.py``), and with the source file run again in its own Keras.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from keras_helpers import KERAS_FIXTURES
from lstmconvert.cli import main

keras = pytest.importorskip("keras", reason="Keras 3 is not installed")
TOL = 1e-5


def _reference(name: str) -> tuple:
    ref = np.load(KERAS_FIXTURES / f"{name}.ref.npz")
    xs = [ref[f"x{k}"] for k in range(sum(key.startswith("x") for key in ref.files))]
    ys = [ref[f"y{k}"] for k in range(sum(key.startswith("y") for key in ref.files))]
    return xs, ys


def _load_source(path):
    """The source file in the Keras that wrote it."""
    if path.suffix == ".h5":
        tf_keras = pytest.importorskip("tf_keras", reason="tf_keras runs tf.keras-written files")
        return tf_keras.models.load_model(str(path), compile=False, safe_mode=True)
    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


def _outputs(model, xs: list) -> list:
    out = model(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(y) for y in (out if isinstance(out, (list, tuple)) else [out])]


def _convert(src, dst, *extra, capsys=None) -> str:
    code = main(["convert", str(src), "-o", str(dst), *extra])
    out = capsys.readouterr().out if capsys is not None else ""
    assert code == 0, out
    return out


def _weights(model, name: str) -> list:
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


@pytest.mark.parametrize("fixture, suffix", [("crnn", ".keras"), ("attention", ".keras"),
                                             ("two_branch_tf_keras", ".h5")])
def test_widened_model_computes_what_the_source_did(fixture, suffix, tmp_path, capsys):
    src = KERAS_FIXTURES / f"{fixture}{suffix}"
    dst = tmp_path / f"wide{suffix}"
    out = _convert(src, dst, capsys=capsys)
    assert "function preservation: exact" in out
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    source = _load_source(src)
    xs, ref = _reference(fixture)
    got, again = _outputs(widened, xs), _outputs(source, xs)
    for y_ref, y_src, y_new in zip(ref, again, got):
        assert y_new.shape == y_ref.shape
        assert np.abs(y_new - y_ref).max() <= TOL
        assert np.abs(y_new - y_src).max() <= TOL

    # Every LSTM became a Bidirectional whose forward layer holds the source weights bit for bit.
    lstms = [layer.name for layer in source.layers if type(layer).__name__ == "LSTM"]
    assert lstms
    for name in lstms:
        wrapper = widened.get_layer(name)
        assert type(wrapper).__name__ == "Bidirectional" and wrapper.merge_mode == "concat"
        old = _weights(source, name)
        forward = [np.asarray(w) for w in wrapper.forward_layer.get_weights()]
        backward = [np.asarray(w) for w in wrapper.backward_layer.get_weights()]
        assert wrapper.backward_layer.go_backwards
        # A following LSTM gains zero kernel rows; everything else is the source's, bit for bit.
        assert np.array_equal(forward[0][: old[0].shape[0]], old[0])
        assert not forward[0][old[0].shape[0]:].any()
        for a, b in zip(forward[1:] + backward[1:], old[1:] + old[1:]):  # --backward copy
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_consumers_keep_old_rows_and_get_zero_backward_rows(tmp_path):
    src = KERAS_FIXTURES / "attention.keras"
    dst = tmp_path / "wide.keras"
    _convert(src, dst)
    source, widened = _load_source(src), keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    hidden = source.get_layer("lstm").units
    old, new = _weights(source, "classify"), _weights(widened, "classify")
    # classify reads [attention-pooled (H) | max-pooled (H)]: each block gains H zero rows after it.
    assert new[0].shape == (4 * hidden, old[0].shape[1])
    assert np.array_equal(new[0][:hidden], old[0][:hidden]) and not new[0][hidden:2 * hidden].any()
    assert np.array_equal(new[0][2 * hidden:3 * hidden], old[0][hidden:]) and not new[0][3 * hidden:].any()
    assert np.array_equal(new[1], old[1])
    for name in ("score",):
        old, new = _weights(source, name), _weights(widened, name)
        assert np.array_equal(new[0][:hidden], old[0]) and not new[0][hidden:].any()


def test_lstm_option_selects_one_lstm_and_widens_a_conv1d_reader(tmp_path, capsys):
    src = KERAS_FIXTURES / "layernorm.keras"
    dst = tmp_path / "wide.keras"
    out = _convert(src, dst, "--lstm", "lstm1", capsys=capsys)
    assert "'lstm1'" in out and "'mix'" in out and "function preservation: exact" in out
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    assert type(widened.get_layer("lstm1")).__name__ == "Bidirectional"
    assert type(widened.get_layer("lstm2")).__name__ == "LSTM"
    source = _load_source(src)
    old, new = _weights(source, "mix"), _weights(widened, "mix")
    hidden = source.get_layer("lstm1").units
    assert new[0].shape == (old[0].shape[0], 2 * hidden, old[0].shape[2])  # (kernel, in, out)
    assert np.array_equal(new[0][:, :hidden], old[0]) and not new[0][:, hidden:].any()
    for name in ("lstm2", "norm", "out"):  # untouched layers keep their weights bit for bit
        assert all(np.array_equal(a, b) for a, b in zip(_weights(source, name), _weights(widened, name)))
    xs, ref = _reference("layernorm")
    assert np.abs(_outputs(widened, xs)[0] - ref[0]).max() <= TOL


def test_lstm_option_on_a_stack_widens_only_the_named_layer(tmp_path):
    dst = tmp_path / "wide.keras"
    _convert(KERAS_FIXTURES / "crnn.keras", dst, "--lstm", "lstm2")
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    assert type(widened.get_layer("lstm1")).__name__ == "LSTM"
    assert type(widened.get_layer("lstm2")).__name__ == "Bidirectional"
    xs, ref = _reference("crnn")
    assert np.abs(_outputs(widened, xs)[0] - ref[0]).max() <= TOL


def test_sum_merge_with_zero_backward_keeps_widths(tmp_path, capsys):
    src = KERAS_FIXTURES / "two_branch_tf_keras.h5"
    dst = tmp_path / "wide.h5"
    out = _convert(src, dst, "--merge", "sum", "--backward", "zeros", capsys=capsys)
    assert "function preservation: exact" in out and "note: the source was written by tf.keras" in out
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    assert widened.get_layer("lstm_left").merge_mode == "sum"
    xs, ref = _reference("two_branch_tf_keras")
    assert np.abs(_outputs(widened, xs)[0] - ref[0]).max() <= TOL


def _refused(args: list, tmp_path, capsys) -> str:
    capsys.readouterr()
    before = set(tmp_path.iterdir())
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1 and err.startswith("lstmconvert: error: ")
    assert set(tmp_path.iterdir()) == before
    return err


def test_layer_normalization_reader_is_refused_by_name(tmp_path, capsys):
    src = KERAS_FIXTURES / "layernorm.keras"
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.keras")], tmp_path, capsys)
    assert str(src) in err and "LayerNormalization 'norm'" in err and "--no-preserve" in err


def test_no_preserve_widens_layer_normalization_with_a_warning(tmp_path, capsys):
    src = KERAS_FIXTURES / "layernorm.keras"
    dst = tmp_path / "wide.keras"
    assert main(["convert", str(src), "-o", str(dst), "--lstm", "lstm2", "--no-preserve"]) == 0
    captured = capsys.readouterr()
    assert "function preservation: none" in captured.out
    assert "warning: the widened model is not function-preserving" in captured.err
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    gamma, beta = _weights(widened, "norm")
    hidden = _load_source(src).get_layer("lstm2").units
    assert gamma.shape == (2 * hidden,) and np.all(gamma[hidden:] == 1) and not beta[hidden:].any()


def test_cross_format_request_for_a_model_outside_the_neutral_shape_is_refused(tmp_path, capsys):
    src = KERAS_FIXTURES / "crnn.keras"
    err = _refused(["convert", str(src), "-o", str(tmp_path / "crnn.onnx")], tmp_path, capsys)
    assert str(src) in err and "holds Conv1D 'conv'; widen it in its own format (.keras)" in err


def test_weights_only_file_is_refused(tmp_path, capsys):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(2, name="lstm")])
    weights = tmp_path / "only.weights.h5"
    model.save_weights(str(weights))
    with h5py.File(weights) as h5:
        assert "model_config" not in h5.attrs
    err = _refused(["convert", str(weights), "-o", str(tmp_path / "wide.h5"), "--lstm", "lstm"], tmp_path, capsys)
    assert "weights-only" in err or "no model architecture" in err


def test_unknown_lstm_name_is_refused(tmp_path, capsys):
    src = KERAS_FIXTURES / "crnn.keras"
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.keras"), "--lstm", "nope"], tmp_path, capsys)
    assert "'nope'" in err and "lstm1, lstm2" in err


def test_describe_edit_and_signature():
    from lstmconvert.formats.keras_format import describe_edit, signature
    from lstmconvert.options import EditRequest

    path = KERAS_FIXTURES / "two_branch_tf_keras.h5"
    assert signature(path) == [("left", (None, None, 3), "float32"), ("right", (None, None, 2), "float32")]
    roles = {row["name"]: row["role"] for row in describe_edit(path, EditRequest())}
    assert roles["lstm_left"] == roles["lstm_right"] == "lstm"
    assert roles["read_left"] == roles["read_right"] == "consumer"
    assert roles["join"] == roles["hidden"] == "other"


def test_describe_edit_shows_a_refusal_on_its_layer(capsys):
    from lstmconvert.formats.keras_format import describe_edit
    from lstmconvert.options import EditRequest

    rows = {row["name"]: row for row in describe_edit(KERAS_FIXTURES / "layernorm.keras", EditRequest())}
    assert rows["norm"]["change"].startswith("refused: ") and "LayerNormalization" in rows["norm"]["change"]
    assert rows["lstm1"]["role"] == rows["lstm2"]["role"] == "lstm" and rows["mix"]["role"] == "consumer"
    assert main(["inspect", str(KERAS_FIXTURES / "layernorm.keras")]) == 0
    assert "refused: " in capsys.readouterr().out


def test_nested_model_and_second_output_pass_through_unchanged(tmp_path):
    """A Sequential used as a layer (with frozen BatchNorm statistics) and an output the LSTM does not
    reach keep their weights bit for bit; both outputs match the source, run in Keras."""
    layers = keras.layers
    keras.utils.set_random_seed(3)
    encoder = keras.Sequential([keras.Input((None, 3)), layers.Dense(4, name="proj"),
                                layers.BatchNormalization(name="bn")], name="encoder")
    encoder.get_layer("bn").moving_mean.assign(np.linspace(-1, 1, 4).astype("float32"))
    inp = keras.Input((None, 3), name="x")
    features = encoder(inp)
    tags = layers.Dense(2, name="tags")(layers.LSTM(5, return_sequences=True, name="lstm")(features))
    side = layers.Dense(1, name="side")(layers.GlobalAveragePooling1D(name="pool")(features))
    src = tmp_path / "nested.keras"
    keras.Model(inp, [tags, side], name="two_outputs").save(str(src))
    dst = tmp_path / "wide.keras"
    _convert(src, dst)

    source = keras.saving.load_model(str(src), compile=False, safe_mode=True)
    widened = keras.saving.load_model(str(dst), compile=False, safe_mode=True)
    assert type(widened.get_layer("lstm")).__name__ == "Bidirectional"
    for name in ("encoder", "side"):
        assert all(np.array_equal(a, b) for a, b in zip(_weights(source, name), _weights(widened, name)))
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    for y_src, y_new in zip(_outputs(source, [x]), _outputs(widened, [x])):
        assert y_new.shape == y_src.shape and np.abs(y_new - y_src).max() <= TOL


def test_lambda_layer_and_consumer_option_are_refused(tmp_path, capsys):
    layers = keras.layers
    with warnings.catch_warnings():  # Keras warns that a lambda is unsafe to serialize
        warnings.simplefilter("ignore")
        src = tmp_path / "lambda.keras"
        keras.Sequential([keras.Input((None, 3)), layers.LSTM(2, return_sequences=True, name="lstm"),
                          layers.Lambda(lambda x: 2 * x, name="double"), layers.Dense(1, name="head")]).save(str(src))
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.keras"), "--lstm", "lstm"], tmp_path, capsys)
    assert "never runs code from a file" in err
    src = KERAS_FIXTURES / "crnn.keras"
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.keras"), "--consumer", "tags"], tmp_path, capsys)
    assert "--consumer" in err


def _self_attention_model(path, multi_head=False):
    """LSTM -> self-attention over its output -> pooling -> Dense, saved by Keras 3 (random weights)."""
    layers = keras.layers
    keras.utils.set_random_seed(5)
    inp = keras.Input((None, 3), name="x")
    h = layers.LSTM(6, return_sequences=True, name="lstm")(inp)
    if multi_head:
        attended = layers.MultiHeadAttention(2, 3, name="attend")(h, h)
    else:
        attended = layers.Attention(use_scale=True, name="attend")([h, h])
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling1D(name="pool")(attended))
    keras.Model(inp, out, name="self_attention").save(str(path))
    return path


def test_self_attention_is_followed_and_exact_with_a_zero_backward_direction(tmp_path, capsys):
    """Attention([h, h]) passes the value's features on; its scores (query . key) see the backward
    half, so only --backward zeros keeps the function, and a copy is widened with a warning."""
    src = _self_attention_model(tmp_path / "self_attention.keras")
    x = np.random.default_rng(1).normal(size=(2, 7, 3)).astype(np.float32)
    source = keras.saving.load_model(str(src), compile=False, safe_mode=True)
    (expected,) = _outputs(source, [x])

    out = _convert(src, tmp_path / "zeros.keras", "--backward", "zeros", capsys=capsys)
    assert "function preservation: exact" in out
    widened = keras.saving.load_model(str(tmp_path / "zeros.keras"), compile=False, safe_mode=True)
    assert type(widened.get_layer("lstm")).__name__ == "Bidirectional"
    assert widened.get_layer("head").get_weights()[0].shape == (12, 2)
    (got,) = _outputs(widened, [x])
    assert np.abs(got - expected).max() <= TOL

    out = _convert(src, tmp_path / "copy.keras", capsys=capsys)
    assert "function preservation: none" in out and "'attend'" in out and "--backward zeros" in out
    (copied,) = _outputs(keras.saving.load_model(str(tmp_path / "copy.keras"), compile=False, safe_mode=True), [x])
    assert copied.shape == expected.shape and np.abs(copied - expected).max() > TOL


def test_attention_with_feature_weights_is_refused(tmp_path, capsys):
    src = _self_attention_model(tmp_path / "mha.keras", multi_head=True)
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.keras")], tmp_path, capsys)
    assert "MultiHeadAttention 'attend'" in err


def test_a_folder_saved_with_zipped_false_is_widened_in_place(tmp_path, capsys):
    src = tmp_path / "crnn_folder"
    keras.saving.load_model(str(KERAS_FIXTURES / "crnn.keras"), compile=False, safe_mode=True).save(str(src),
                                                                                                     zipped=False)
    out = _convert(src, tmp_path / "wide.keras", capsys=capsys)
    assert "function preservation: exact" in out
    xs, ys = _reference("crnn")
    widened = keras.saving.load_model(str(tmp_path / "wide.keras"), compile=False, safe_mode=True)
    for y_ref, y_new in zip(ys, _outputs(widened, xs)):
        assert np.abs(y_new - y_ref).max() <= TOL


def test_rnn_around_an_lstm_cell_is_widened_and_an_rnn_reader_is_a_consumer(tmp_path, capsys):
    """``RNN(LSTMCell)`` computes what ``LSTM`` does: it is wrapped in Bidirectional like one; an ``RNN``
    reading its output (here around a GRUCell) gets zero kernel rows for the backward features."""
    layers = keras.layers
    keras.utils.set_random_seed(7)
    inp = keras.Input((None, 3), name="x")
    h = layers.Conv1D(4, 2, padding="same", name="conv")(inp)
    h = layers.RNN(layers.LSTMCell(5), return_sequences=True, name="cells")(h)
    h = layers.RNN(layers.GRUCell(4), return_sequences=True, name="reader")(h)
    src = tmp_path / "cells.keras"
    keras.Model(inp, layers.Dense(2, name="head")(h), name="cells").save(str(src))
    out = _convert(src, tmp_path / "wide.keras", capsys=capsys)
    assert "bidirectional 'cells'" in out and "'reader'" in out and "function preservation: exact" in out
    source = keras.saving.load_model(str(src), compile=False, safe_mode=True)
    widened = keras.saving.load_model(str(tmp_path / "wide.keras"), compile=False, safe_mode=True)
    assert type(widened.get_layer("cells")).__name__ == "Bidirectional"
    assert widened.get_layer("reader").get_weights()[0].shape == (10, 12)
    x = np.random.default_rng(2).normal(size=(2, 6, 3)).astype(np.float32)
    (expected,), (got,) = _outputs(source, [x]), _outputs(widened, [x])
    assert np.abs(got - expected).max() <= TOL


def test_encoder_decoder_widens_the_encoder_and_keeps_the_decoder(tmp_path, capsys):
    """The classic Keras seq2seq: the encoder (return_state=True) becomes a Bidirectional, whose forward
    states come first, so the decoder (initial_state=[h, c]) still starts from the same states and is
    left as it is; naming the decoder is refused."""
    layers = keras.layers
    keras.utils.set_random_seed(11)
    enc_in, dec_in = keras.Input((None, 4), name="enc_in"), keras.Input((None, 5), name="dec_in")
    _, h, c = layers.LSTM(6, return_state=True, name="encoder")(enc_in)
    decoded = layers.LSTM(6, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    src = tmp_path / "seq2seq.keras"
    keras.Model([enc_in, dec_in], layers.Dense(5, activation="softmax", name="out")(decoded)).save(str(src))

    out = _convert(src, tmp_path / "wide.keras", capsys=capsys)
    assert "bidirectional 'encoder'" in out and "function preservation: exact" in out
    assert "LSTM 'decoder' starts from the states it is given" in out
    source = keras.saving.load_model(str(src), compile=False, safe_mode=True)
    widened = keras.saving.load_model(str(tmp_path / "wide.keras"), compile=False, safe_mode=True)
    assert type(widened.get_layer("encoder")).__name__ == "Bidirectional"
    assert type(widened.get_layer("decoder")).__name__ == "LSTM"
    assert all(np.array_equal(a, b) for a, b in zip(_weights(source, "decoder"), _weights(widened, "decoder")))
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(2, 7, 4)).astype(np.float32), rng.normal(size=(2, 3, 5)).astype(np.float32)]
    (expected,), (got,) = _outputs(source, xs), _outputs(widened, xs)
    assert np.abs(got - expected).max() <= TOL

    err = _refused(["convert", str(src), "-o", str(tmp_path / "dec.keras"), "--lstm", "decoder"], tmp_path, capsys)
    assert "starts from states it is given" in err


def test_tf_keras_encoder_decoder_is_refused_in_one_line(tmp_path, capsys):
    """tf.keras records decoder(x, initial_state=[h, c]) as a call on three inputs, which Keras 3 cannot
    rebuild: the refusal says what and where to go instead of relaying Keras 3's error."""
    tf_keras = pytest.importorskip("tf_keras", reason="tf_keras writes the tf.keras file")
    layers = tf_keras.layers
    enc_in, dec_in = tf_keras.Input((None, 4)), tf_keras.Input((None, 5))
    _, h, c = layers.LSTM(6, return_state=True, name="encoder")(enc_in)
    decoded = layers.LSTM(6, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    src = tmp_path / "seq2seq_tf_keras.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_keras.Model([enc_in, dec_in], layers.Dense(5, name="out")(decoded)).save(str(src))
    err = _refused(["convert", str(src), "-o", str(tmp_path / "wide.h5")], tmp_path, capsys)
    assert "LSTM 'decoder' is called with its initial states as extra inputs" in err and "ONNX" in err
