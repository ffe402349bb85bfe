"""Save a built Keras 3 model as a ``.keras`` archive whose weights are written straight from numpy.

``model.save`` reads every variable back out of the backend, writes the weights file to a temporary
file and copies it into the archive in 8 kB pieces; before it, ``set_weights`` copies every array into
the variables. For a large model that is most of the conversion. Here the archive is assembled the
way Keras's own saver assembles it (``keras.src.saving.saving_lib``: the same ``config.json`` and
``metadata.json`` from Keras's serializer, the same ``model.weights.h5`` layout written by Keras's own
``H5IOStore`` walking the model with Keras's own ``_save_state``), with one difference: when the
store is handed a variable, it writes the neutral model's array for that variable instead. The
variables themselves are never filled (they hold their zeros initial values), and the weights file
is copied into the archive in large pieces.

So the file is exactly what ``set_weights`` + ``model.save`` would write, and
``keras.saving.load_model(path, safe_mode=True)`` reads it as such. Should this Keras lack the private
pieces used here, ``save_archive`` returns False and the caller uses the slow path.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

COPY_CHUNK = 16 << 20  # bytes per piece when copying the weights file into the archive


def save_archive(keras_model, values: dict, path: Path) -> bool:
    """Write ``keras_model`` to ``path`` (.keras) with ``values`` ({id(variable): array}) as its weights.

    Returns False, having written nothing, when this Keras version has no ``saving_lib`` of the
    expected shape; raises if a variable of the model has no array.
    """
    try:
        from keras.src.saving import saving_lib

        store_class = saving_lib.H5IOStore
        serialize, save_state = saving_lib._serialize_model_as_json, saving_lib._save_state
        names = saving_lib._CONFIG_FILENAME, saving_lib._METADATA_FILENAME, saving_lib._VARS_FNAME_H5
    except (ImportError, AttributeError):
        return False

    class ArrayStore(store_class):
        """Keras's weights store, handed the neutral arrays in place of the (unfilled) variables."""

        def __setitem__(self, key, value):
            array = values.get(id(value))
            if array is None:
                raise RuntimeError(f"no array for Keras variable {getattr(value, 'path', key)}")
            super().__setitem__(key, array)

    config_name, metadata_name, weights_name = names
    config_json, metadata_json = serialize(keras_model)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".weights-") as scratch:
        weights = Path(scratch) / weights_name
        store = ArrayStore(str(weights), mode="w")
        try:
            save_state(keras_model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
        finally:
            store.close()
        with zipfile.ZipFile(path, "w") as archive:  # stored, not deflated, as Keras writes it
            archive.writestr(metadata_name, metadata_json)
            archive.writestr(config_name, config_json)
            with open(weights, "rb") as source, archive.open(weights_name, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, COPY_CHUNK)
    return True
