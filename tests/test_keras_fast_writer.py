"""The .keras archive written straight from numpy (``archive_writer``) against Keras's own saver.

The same model saved both ways must hold the same config (Keras's object ids aside) and the same
weights, dataset by dataset; the fast file loads with ``safe_mode=True`` and computes what the source
PyTorch module computes.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch")

import lstmconvert  # noqa: E402
from lstmconvert.formats.keras_format.writer import build_keras_model  # noqa: E402
from torch_helpers import FIXTURES, Tagger, assert_close, load_user, numpy_out, tokens  # noqa: E402


def _without_object_ids(value):
    if isinstance(value, dict):
        return {k: _without_object_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_without_object_ids(v) for v in value]
    return value


def _datasets(archive: zipfile.ZipFile) -> dict:
    found = {}
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: found.__setitem__(name, (item[()], dict(item.attrs)))
                           if isinstance(item, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("name", ["tagger.pt", "tagger_bf16.pt"])
def test_fast_archive_is_what_keras_saves(tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / name))
        lstmconvert.save(model, tmp_path / "fast.keras")
        build_keras_model(model).save(tmp_path / "keras.keras")
    fast, slow = zipfile.ZipFile(tmp_path / "fast.keras"), zipfile.ZipFile(tmp_path / "keras.keras")
    assert sorted(fast.namelist()) == sorted(slow.namelist())
    assert all(info.compress_type == zipfile.ZIP_STORED for info in fast.infolist())
    assert _without_object_ids(json.loads(fast.read("config.json"))) == \
        _without_object_ids(json.loads(slow.read("config.json")))
    ours, theirs = _datasets(fast), _datasets(slow)
    assert list(ours) == list(theirs)
    for key, (array, attrs) in theirs.items():
        assert ours[key][0].dtype == array.dtype and ours[key][0].tobytes() == array.tobytes(), key
        assert ours[key][1] == attrs, key


def test_fast_archive_loads_safely_and_computes_the_source():
    source = load_user(Tagger, FIXTURES / "tagger.pt")
    x = tokens(4, 9, 3)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "bi.keras"
        lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(FIXTURES / "tagger.pt")), path)
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        out = np.asarray(loaded(x.T.numpy()))  # Keras is batch-major
    assert_close(out.transpose(1, 0, 2), numpy_out(source, x))
