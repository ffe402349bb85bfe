"""Write a ``KerasModel`` as Keras 3's savers would, with json and h5py (no Keras, no TensorFlow).

* ``.keras``: a zip archive, members stored (not deflated) as Keras writes them: ``metadata.json``,
  ``config.json`` and ``model.weights.h5``, whose groups follow each layer's attribute path
  (``layers/bidirectional/forward_layer/cell/vars/0``), each ``vars`` group recording its owner's name.
  bfloat16 variables are stored as 2-byte opaque values tagged ``dtype="bfloat16"``, as Keras tags them.
* legacy ``.h5``: root attributes ``model_config`` / ``keras_version`` / ``backend``; a
  ``model_weights`` group listing ``layer_names``, one group per layer listing its ``weight_names``
  (``<model>/<layer>/lstm_cell/kernel``), which Keras's loader assigns by position.

Each array is copied once, straight from the (possibly memory-mapped) source into its place in the
file (``raw_data``); an archive's weights file is written in place inside the archive (``archive``),
not built beside it and copied in.
"""

from __future__ import annotations

import datetime
import json
from importlib import metadata
from pathlib import Path

from ...errors import require
from .archive import USER_BLOCK, InPlaceArchive
from .container import CONFIG, METADATA, WEIGHTS
from .model_config import KerasModel
from .raw_data import RawData

# The Keras 3 release whose savers these files follow: recorded when Keras itself is not installed.
FORMAT_KERAS_VERSION = "3.15.1"
BACKEND = "tensorflow"  # what a legacy .h5 records; Keras's loader reads it only for Keras 1/2 files


def write_archive(keras: KerasModel, path: Path) -> None:
    """``path`` (.keras): weights, metadata and config of ``keras``; the weights written once, in place."""
    h5py, data = _h5py(), RawData()
    with h5py.File(path, "w", userblock_size=USER_BLOCK) as store:
        store.create_group("vars").attrs["name"] = keras.name
        layers_group = store.create_group("layers")
        for layer, store_path in keras.store_paths():
            group = layers_group.require_group(store_path.removeprefix("layers/"))
            for variables in layer.groups:
                where = group.require_group(f"{variables.path}/vars" if variables.path else "vars")
                where.attrs["name"] = variables.owner
                for k, (_, array) in enumerate(variables.variables):
                    data.add(where, str(k), array, tag_bfloat16=True)
    crc = data.copy_into(path, checksum_from=USER_BLOCK)
    saved = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")
    InPlaceArchive(path, WEIGHTS).close(crc, {
        METADATA: json.dumps({"keras_version": keras_version(), "date_saved": saved}).encode("utf8"),
        CONFIG: json.dumps(keras.config()).encode("utf8"),
    })


def write_legacy_h5(keras: KerasModel, path: Path) -> None:
    """``path`` (.h5): the legacy full-model HDF5 file of a Sequential ``keras``."""
    h5py, data = _h5py(), RawData()
    version = keras_version().encode("utf8")
    with h5py.File(path, "w") as store:
        store.attrs["backend"] = BACKEND.encode("utf8")
        store.attrs["keras_version"] = version
        store.attrs["model_config"] = json.dumps(keras.legacy_config()).encode("utf8")
        weights = store.create_group("model_weights")
        weights.attrs["backend"] = BACKEND.encode("utf8")
        weights.attrs["keras_version"] = version
        weights.attrs["layer_names"] = [layer.name.encode("utf8") for layer in keras.weighted_layers]
        for layer in keras.weighted_layers:
            group = weights.create_group(layer.name)
            names = [f"{keras.name}/{layer.name}/{name}" for name, _ in layer.variables]
            group.attrs["weight_names"] = [name.encode("utf8") for name in names]
            for name, (_, array) in zip(names, layer.variables):
                data.add(group, name, array, tag_bfloat16=False)
        weights.create_group("top_level_model_weights").attrs["weight_names"] = []
    data.copy_into(path)


def keras_version() -> str:
    """The Keras version a file records: the installed Keras 3's (read without importing it), else the
    release whose savers this module follows."""
    try:
        installed = metadata.version("keras")
    except metadata.PackageNotFoundError:
        return FORMAT_KERAS_VERSION
    return installed if installed.startswith("3.") else FORMAT_KERAS_VERSION


def _h5py():
    return require("h5py", "keras", "writing Keras files")

