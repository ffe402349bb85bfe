"""Keras format: ``.keras`` archives and full-model ``.h5`` files.

Reading needs only h5py and numpy (no TensorFlow); writing and running use Keras 3 (TensorFlow
backend), and running a tf.keras-written file uses tf_keras when it is installed.
"""

from .reader import read
from .runtime import run
from .writer import write

__all__ = ["read", "write", "run"]
