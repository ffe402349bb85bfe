"""Keras files written without Keras (``model_config`` + ``file_writer``) against Keras's own savers.

The reference is built here with Keras's own layers, its weights set with ``set_weights`` from the
neutral model's arrays, and saved with ``model.save``. lstmconvert's file must hold the same weights,
dataset by dataset and bit for bit, at the same places with the same attributes; Keras must load it
with ``safe_mode=True`` into a model whose config is the reference's; and the loaded model must compute
what the source PyTorch module computes. Writing must import neither Keras nor TensorFlow.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="needs the [keras] extra")
h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch", reason="needs the [torch] extra")

import lstmconvert  # noqa: E402
from torch_helpers import FIXTURES, Tagger, assert_close, load_user, numpy_out, tokens  # noqa: E402

KERAS_FIXTURES = FIXTURES.parent / "keras"


def _without_object_ids(value):
    """A config as JSON holds it (tuples become lists), without Keras's per-process object ids."""
    if isinstance(value, dict):
        return {k: _without_object_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, (list, tuple)):
        return [_without_object_ids(v) for v in value]
    return value


def _contents(h5) -> dict:
    """{path: (array or None for a group, attributes)} of every object in an HDF5 file."""
    found = {"/": (None, _attrs(h5.attrs))}
    h5.visititems(lambda name, item: found.__setitem__(
        name, (item[()] if isinstance(item, h5py.Dataset) else None, _attrs(item.attrs))))
    return found


def _attrs(attrs) -> dict:
    out = {}
    for key, value in attrs.items():
        if key == "model_config":
            continue  # compared through the loaded models' configs
        if isinstance(value, np.ndarray):
            value = [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
        out[key] = value.decode() if isinstance(value, bytes) else value
    return out


def _archive_contents(path) -> dict:
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        return _contents(h5)


def _file_contents(path) -> dict:
    with h5py.File(path, "r") as h5:
        return _contents(h5)


# -- the reference: Keras's own layers and saver ---------------------------------------------------

def _keras_lstm(direction, name, sequences, go_backwards=False, dtype="float32"):
    # TensorFlow's QR (behind the default Orthogonal initializer) has no bfloat16 kernel.
    initializer = "zeros" if dtype == "bfloat16" else "orthogonal"
    return keras.layers.LSTM(direction.hidden_size, return_sequences=sequences, go_backwards=go_backwards,
                             name=name, dtype=dtype, recurrent_initializer=initializer)


def _lstm_weights(direction):
    """Keras's kernel, recurrent kernel and single bias (PyTorch's two biases added)."""
    bias = sum(b for b in (direction.b_ih, direction.b_hh) if b is not None)
    return [direction.w_ih.T, direction.w_hh.T, bias]


def _reference_tagger(model, names):
    """Embedding -> Bidirectional(LSTM) x n -> Dense, as a Keras user writes it."""
    dtype = str(model.dtype)
    layers = [keras.Input(shape=(None,), dtype="int64", name="input"),
              keras.layers.Embedding(*model.embedding.weight.shape, name=names["embedding"], dtype=dtype)]
    weights = [[model.embedding.weight]]
    for k, layer in enumerate(model.layers):
        forward, backward = layer.directions
        layers.append(keras.layers.Bidirectional(_keras_lstm(forward, f"lstm_{k}", True, dtype=dtype),
                                                 merge_mode=layer.merge, name=names["lstm"][k], dtype=dtype))
        weights.append(_lstm_weights(forward) + _lstm_weights(backward))
    dense = model.head[0]
    layers.append(keras.layers.Dense(dense.out_features, name=names["head"], dtype=dtype))
    weights.append([dense.weight.T, dense.bias])
    reference = keras.Sequential(layers, name=names["model"])
    for layer, arrays in zip(reference.layers, weights):
        layer.set_weights(arrays)
    return reference


def _reference_classifier(model, names):
    """Masking -> LSTM (last state) -> Dense(sigmoid): features in, one score out."""
    (direction,) = model.layers[0].directions
    reference = keras.Sequential([
        keras.Input(shape=(None, direction.input_size), dtype="float32", name="input"),
        keras.layers.Masking(mask_value=model.mask_value, name=names["masking"]),
        _keras_lstm(direction, names["lstm"][0], False),
        keras.layers.Dense(model.head[0].out_features, activation="sigmoid", name=names["head"]),
    ], name=names["model"])
    reference.layers[1].set_weights(_lstm_weights(direction))
    reference.layers[2].set_weights([model.head[0].weight.T, model.head[0].bias])
    return reference


def _tagger_case(name):
    model = lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / name))
    names = {"model": "sequence_model", "embedding": "embedding", "lstm": ["bidirectional_0", "bidirectional_1"],
             "head": "dense_0"}
    return model, _reference_tagger(model, names)


def _classifier_case(name):
    model = lstmconvert.load(KERAS_FIXTURES / "classifier.keras")
    names = {"model": "classifier", "masking": "masking", "lstm": ["lstm_2"], "head": "dense_1"}
    return model, _reference_classifier(model, names)


CASES = [("tagger.pt", _tagger_case, ".keras"), ("tagger.pt", _tagger_case, ".h5"),
         ("tagger_bf16.pt", _tagger_case, ".keras"),
         ("classifier.keras", _classifier_case, ".keras"), ("classifier.keras", _classifier_case, ".h5")]


@pytest.mark.parametrize("name,case,suffix", CASES, ids=[f"{n}->{s}" for n, _, s in CASES])
def test_file_is_what_keras_saves(tmp_path, name, case, suffix):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, reference = case(name)
        ours, theirs = tmp_path / f"ours{suffix}", tmp_path / f"keras{suffix}"
        lstmconvert.save(model, ours)
        reference.save(theirs)
        loaded = keras.saving.load_model(ours, safe_mode=True, compile=False)
    assert _without_object_ids(loaded.get_config()) == _without_object_ids(reference.get_config())
    if suffix == ".keras":
        fast, slow = zipfile.ZipFile(ours), zipfile.ZipFile(theirs)
        assert sorted(fast.namelist()) == sorted(slow.namelist())
        assert all(info.compress_type == zipfile.ZIP_STORED for info in fast.infolist())
        assert fast.testzip() is None  # every member's CRC-32 checks out
        assert json.loads(fast.read("metadata.json"))["keras_version"] == keras.__version__
        mine, keras_own = _archive_contents(ours), _archive_contents(theirs)
    else:
        mine, keras_own = _file_contents(ours), _file_contents(theirs)
    assert sorted(mine) == sorted(keras_own)
    for key, (array, attrs) in keras_own.items():
        assert mine[key][1] == attrs, key
        if array is not None:
            assert mine[key][0].dtype == array.dtype and mine[key][0].shape == array.shape, key
            assert mine[key][0].tobytes() == array.tobytes(), key


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_file_loads_safely_and_computes_the_source(tmp_path, suffix):
    source = load_user(Tagger, FIXTURES / "tagger.pt")
    x = tokens(4, 9, 3)
    path = tmp_path / f"bi{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / "tagger.pt")), path)
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        out = np.asarray(loaded(x.T.numpy()))  # Keras is batch-major
    assert_close(out.transpose(1, 0, 2), numpy_out(source, x))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_writing_keras_files_imports_neither_keras_nor_tensorflow(tmp_path, suffix):
    code = (
        "import json, sys, lstmconvert\n"
        f"lstmconvert.convert_file({str(FIXTURES / 'tagger.pt')!r}, {str(tmp_path / ('bi' + suffix))!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'tf_keras', 'torch'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / f"bi{suffix}").stat().st_size > 0


def test_archive_with_zip64_records_opens_in_zipfile_and_keras(tmp_path, monkeypatch):
    """Sizes and offsets from 4 GiB up go into ZIP64 records; with the threshold lowered, every record of
    a small archive takes that path, and zipfile (which checks each member's CRC-32) and Keras read it."""
    from lstmconvert.formats.keras_format import archive

    monkeypatch.setattr(archive, "ZIP64_LIMIT", 64)
    path = tmp_path / "zip64.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / "tagger.pt"))
        lstmconvert.save(model, path)
        with zipfile.ZipFile(path) as opened:
            assert opened.testzip() is None
            assert sorted(opened.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert b"PK\x06\x06" in path.read_bytes()  # the ZIP64 end of central directory record
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        x = tokens(2, 5, 1)
        source = load_user(Tagger, FIXTURES / "tagger.pt")
        out = np.asarray(loaded(x.T.numpy()))
    assert_close(out.transpose(1, 0, 2)[..., :], numpy_out(source, x))


def test_a_failed_weight_write_fails_the_save(tmp_path, monkeypatch):
    """The weights are written by a worker thread, and no one waits on most of its writes: the first failure
    (a full disk, say) must still fail the save, whichever write it hit, and leave no file behind."""
    import errno

    from lstmconvert.formats.keras_format import raw_data

    real, calls = raw_data.os.pwrite, []

    def first_fails(fd, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(raw_data.os, "pwrite", first_fails)
    model = lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / "tagger.pt"))
    with warnings.catch_warnings(), pytest.raises(lstmconvert.LstmConvertError, match="No space left"):
        warnings.simplefilter("ignore")
        lstmconvert.save(model, tmp_path / "full.keras")
    assert calls and list(tmp_path.iterdir()) == []
