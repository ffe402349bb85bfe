"""Open a Keras model file with zipfile, json, h5py and numpy only (no TensorFlow, no Keras).

Two containers carry a whole model:

* ``.keras`` (Keras 3, also written by tf_keras >= 2.13): a zip with ``config.json``,
  ``metadata.json`` and ``model.weights.h5``. Weights sit in groups named after the *attribute path*
  of each layer (``layers/lstm_1/cell/vars/0``), not after the layer's name.
* legacy full-model HDF5 (``model.save("x.h5")`` in Keras 3, tf.keras 2, Keras 2): root attributes
  ``model_config`` and ``keras_version``; ``model_weights/<layer name>`` groups list their datasets in
  the ``weight_names`` attribute, and loading is by position in that list.

Both are read lazily inside a ``with`` block so large files are never copied into memory whole.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import ReadError, UnsupportedError, require
from ...limits import file_budget, require_fits
from .hdf5_extent import check_extent
from .hdf5_probe import probe

# The members of a .keras archive (the files of a folder saved with zipped=False).
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"

# Keras splits a long attribute over name0, name1, ... (HDF5_OBJECT_HEADER_LIMIT).
_SPLIT_ATTR_LIMIT = 10_000


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _h5py():
    return require("h5py", "keras", "reading Keras files")


def read_dataset(dataset, where: str, *, budget: int, declared: Optional[str] = None) -> np.ndarray:
    """A dataset as numpy, mapping Keras's opaque bfloat16 storage to ml_dtypes.bfloat16.

    HDF5 has no bfloat16: the .keras saver tags such datasets with ``dtype='bfloat16'``; the legacy
    HDF5 saver leaves them untagged, so there the layer's ``declared`` dtype tells. ``budget`` is the
    most bytes the file can hold (``limits.file_budget``): a larger declared shape is refused unread.
    """
    require_fits(where, dataset.shape or (), dataset.dtype.itemsize, budget)
    try:
        array = dataset[()]
    except OSError as exc:  # truncated or corrupted storage
        raise ReadError(f"{where} cannot be read; the file is damaged ({_first_line(exc)})") from exc
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    tagged = _text(dataset.attrs["dtype"]) if "dtype" in dataset.attrs else None
    if tagged == "bfloat16" or (array.dtype.kind == "V" and declared == "bfloat16"):
        ml_dtypes = require("ml_dtypes", "keras", "reading bfloat16 Keras weights")
        if array.dtype.itemsize != 2:
            raise ReadError(f"{where} is tagged bfloat16 but holds {array.dtype.itemsize}-byte values")
        return array.view(ml_dtypes.bfloat16)
    if array.dtype.kind not in "fiu":
        raise ReadError(f"{where} holds {array.dtype} data, not numbers")
    return array


class KerasFile:
    """The parts of a Keras model file lstmconvert needs: config, version and weights."""

    kind = ""  # "keras" or "h5"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config: dict = {}
        self.keras_version: Optional[str] = None

    @property
    def keras_major(self) -> Optional[int]:
        """The major Keras version that wrote the file (2 for tf.keras/tf_keras), None if unknown.

        Without a recorded version, an RNN config carrying ``time_major`` still tells: tf.keras 2
        always writes it and Keras 3, which removed the option, never does.
        """
        if not self.keras_version:
            return 2 if _has_key(self.config, "time_major") else None
        head = self.keras_version.split(".")[0]
        return int(head) if head.isdigit() else None

    def __enter__(self) -> "KerasFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the file; subclasses close what they opened."""


class KerasArchive(KerasFile):
    """A ``.keras`` zip archive."""

    kind = "keras"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._check_container()
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- the members: from the zip here, from the folder in KerasFolder --------------------------------

    def _check_container(self) -> None:
        if not zipfile.is_zipfile(self.path):
            with open(self.path, "rb") as handle:
                zipped = handle.read(2) == b"PK"
            raise ReadError("a damaged or truncated .keras archive (its zip directory is missing)" if zipped
                            else "not a zip archive (a .keras file is a zip with config.json and weights)")
        self._zip = zipfile.ZipFile(self.path)

    def _names(self) -> set:
        return set(self._zip.namelist())

    def _read(self, member: str) -> bytes:
        return self._zip.read(member)

    def _member_size(self, member: str) -> int:
        return self._zip.getinfo(member).file_size

    def _open_member(self, member: str):
        return self._zip.open(member)

    def _open(self) -> None:
        path = self.path
        try:
            names = self._names()
            if CONFIG not in names:
                raise ReadError("the archive has no config.json; not a Keras model archive")
            self.config = self._json(CONFIG)
            if METADATA in names:
                self.keras_version = self._json(METADATA).get("keras_version")
            if WEIGHTS in names:
                size = self._member_size(WEIGHTS)
                self._budget = file_budget(path, size)
                with self._open_member(WEIGHTS) as head:
                    check_extent(head, size, path, f"{WEIGHTS}: ")
                probe(path, lambda: _h5py().File(self._open_member(WEIGHTS), "r"), size, WEIGHTS)
                self._member = self._open_member(WEIGHTS)
                self._h5 = _h5py().File(self._member, "r")
            elif "model.weights.npz" in names:
                raise UnsupportedError(
                    "weights are stored as model.weights.npz, which holds pickled Keras objects; "
                    "lstmconvert never unpickles a file (save with the default weights_format='h5')"
                )
            else:
                raise ReadError("the archive has no model.weights.h5")
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ReadError(f"damaged .keras archive ({exc})") from exc

    def _json(self, member: str) -> dict:
        try:
            value = json.loads(self._read(member))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReadError(f"{member} is not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise ReadError(f"{member} is not a JSON object")
        return value

    def vars(self, group_path: str, where: str, declared: Optional[str] = None) -> list:
        """The variables saved at ``<group_path>/vars``, in index order (0, 1, ...)."""
        full = f"{group_path}/vars" if group_path else "vars"
        group = self._h5.get(full)
        if group is None:
            raise ReadError(f"{where}: {WEIGHTS} has no group {full}")
        keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if any(not k.isdigit() for k in keys) or [int(k) for k in keys] != list(range(len(keys))):
            raise ReadError(f"{where}: unexpected entries {list(group.keys())} in {full}")
        return [read_dataset(group[k], f"{where} ({full}/{k})", budget=self._budget, declared=declared) for k in keys]

    def saved_name(self, group_path: str) -> Optional[str]:
        """The layer name recent Keras 3 releases write beside a ``vars`` group (older files have none)."""
        group = self._h5.get(f"{group_path}/vars")
        if group is None or "name" not in group.attrs:
            return None
        return _text(group.attrs["name"])

    def close(self) -> None:
        for name in ("_h5", "_member", "_zip"):
            handle = getattr(self, name, None)
            if handle is not None:
                handle.close()


class KerasFolder(KerasArchive):
    """What ``model.save(folder, zipped=False)`` writes: the archive's members as files in a folder."""

    def _check_container(self) -> None:
        if not (self.path / CONFIG).is_file():
            raise ReadError("the folder has no config.json; not a Keras model saved with zipped=False")

    def _names(self) -> set:
        return {entry.name for entry in self.path.iterdir() if entry.is_file()}

    def _read(self, member: str) -> bytes:
        return (self.path / member).read_bytes()

    def _member_size(self, member: str) -> int:
        return (self.path / member).stat().st_size

    def _open_member(self, member: str):
        return open(self.path / member, "rb")


class LegacyH5(KerasFile):
    """A full-model HDF5 file (``model_config`` + ``model_weights``)."""

    kind = "h5"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        h5py = _h5py()
        with open(path, "rb") as head:
            check_extent(head, path.stat().st_size, path)
        probe(path, lambda: h5py.File(path, "r"), path.stat().st_size)
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            raise ReadError(f"not a readable HDF5 file ({_first_line(exc)})") from exc
        try:
            attrs = self._h5.attrs
            if "model_config" not in attrs:
                if "layer_names" in attrs or "layers" in self._h5 or "vars" in self._h5:
                    raise ReadError(
                        "a weights-only file (written by save_weights) holds no model architecture; "
                        "convert a whole-model file instead, written by model.save('model.keras') or "
                        "model.save('model.h5')"
                    )
                raise ReadError("no model_config attribute; not a Keras full-model HDF5 file")
            try:
                self.config = json.loads(_text(attrs["model_config"]))
            except ValueError as exc:
                raise ReadError(f"model_config is not valid JSON ({exc})") from exc
            if "keras_version" in attrs:
                self.keras_version = _text(attrs["keras_version"])
            self.backend = _text(attrs["backend"]) if "backend" in attrs else None
            self._weights = self._h5.get("model_weights")
            if self._weights is None:
                raise ReadError("no model_weights group; the file holds no weights")
        except BaseException:
            self._h5.close()
            raise

    def weight_names(self, layer_name: str, where: str) -> list:
        """The ``weight_names`` of a top-level layer's group, in Keras's loading order."""
        group = self._weights.get(layer_name)
        if group is None or not hasattr(group, "attrs"):
            raise ReadError(f"{where}: the file has no weights group model_weights/{layer_name} "
                            "(a save that failed halfway leaves such files)")
        return split_attribute(group.attrs, "weight_names")

    def weight(self, layer_name: str, name: str, where: str, declared: Optional[str] = None) -> np.ndarray:
        """One listed weight of a top-level layer's group."""
        dataset = self._weights[layer_name].get(name)
        if dataset is None:
            raise ReadError(f"{where}: weight {name} is listed but missing")
        return read_dataset(dataset, f"{where} ({name})", budget=file_budget(self.path), declared=declared)

    def close(self) -> None:
        self._h5.close()


def split_attribute(attrs, name: str) -> list:
    """A list attribute Keras may have split into ``name0``, ``name1``... because of HDF5 limits."""
    if name in attrs:
        values = list(attrs[name])
    else:
        values = []
        for k in range(_SPLIT_ATTR_LIMIT):
            if f"{name}{k}" not in attrs:
                break
            values.extend(attrs[f"{name}{k}"])
    return [_text(v) for v in values]


def open_keras_file(path: Path) -> KerasFile:
    """Open ``path`` as a .keras archive, a folder saved with ``zipped=False``, or a legacy HDF5 model
    (judged by its first bytes)."""
    if path.is_dir():
        return KerasFolder(path)
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"PK") or path.suffix.lower() == ".keras":
        return KerasArchive(path)  # a non-zip .keras is reported as such
    return LegacyH5(path)


def _has_key(value: object, key: str) -> bool:
    """Whether ``key`` is a key of any dict nested in a JSON value."""
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
