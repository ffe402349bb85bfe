"""Importing Keras 3 and tf_keras, only when a file is written or run (reading needs neither).

TensorFlow talks on stderr while it loads (oneDNN notices, "could not find cuda drivers", absl's
"All log messages before absl::InitializeLog()..."), from C++ code that neither ``TF_CPP_MIN_LOG_LEVEL``
nor Python's logging fully reaches. Every import of TensorFlow, Keras or tf_keras goes through
``_quiet_import``: the log levels are set before the first import, and the process's stderr is held
aside while the libraries load, so a command prints only lstmconvert's own lines.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile

from ...errors import MissingDependencyError

# Set before TensorFlow first loads (setdefault: a user's own settings win).
_TF_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR logs
    "TF_ENABLE_ONEDNN_OPTS": "0",  # no "oneDNN custom operations are on" notice (the results are the same op)
    "KERAS_BACKEND": "tensorflow",
}


def import_keras():
    """Keras 3 on the TensorFlow backend (unless KERAS_BACKEND already names another)."""
    try:
        return _quiet_import("keras")
    except ImportError as exc:  # keras itself, or the TensorFlow backend it loads
        missing = (getattr(exc, "name", None) or "keras").split(".")[0]
        raise MissingDependencyError(missing, "keras", "writing and running Keras files") from exc


def import_tf_keras():
    """tf_keras (Keras 2 on TensorFlow), which runs files written by tf.keras / Keras 2."""
    try:
        return _quiet_import("tf_keras")
    except ImportError as exc:
        raise MissingDependencyError(
            "tf_keras", "keras", "running a file written by tf.keras / Keras 2 (which Keras 3 cannot load)"
        ) from exc


def _quiet_import(name: str):
    """Import ``name`` with TensorFlow's start-up chatter kept off the terminal.

    An ImportError propagates (the callers turn it into MissingDependencyError); any other failure
    keeps its message.
    """
    if name in sys.modules:
        return sys.modules[name]
    for key, value in _TF_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        module = importlib.import_module(name)
        _quiet_absl()
        return module
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                module = importlib.import_module(name)
                _initialise_devices()
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
    _quiet_absl()
    return module


def _initialise_devices() -> None:
    """Let TensorFlow look for GPUs now, while stderr is held: it does so lazily on first use otherwise,
    and a machine without CUDA drivers then logs "failed call to cuInit" in the middle of a command."""
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and hasattr(tensorflow, "config"):
        tensorflow.config.list_physical_devices()
        tensorflow.constant(0)  # and its eager context, which initialises the devices it found


def _quiet_absl() -> None:
    """TensorFlow's Python side logs through absl; keep it to errors."""
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
