"""Importing Keras 3 and tf_keras, only when a file is written or run (reading needs neither)."""

from __future__ import annotations

import os

from ...errors import MissingDependencyError, require


def import_keras():
    """Keras 3 on the TensorFlow backend (unless KERAS_BACKEND already names another)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return require("keras", "keras", "writing and running Keras files")


def import_tf_keras():
    """tf_keras (Keras 2 on TensorFlow), which runs files written by tf.keras / Keras 2."""
    try:
        import tf_keras
    except ImportError as exc:
        raise MissingDependencyError(
            "tf_keras", "keras", "running a file written by tf.keras / Keras 2 (which Keras 3 cannot load)"
        ) from exc
    return tf_keras
