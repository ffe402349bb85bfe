"""Keras format: ``.keras`` archives and full-model ``.h5`` files.

Reading needs only h5py and numpy (no TensorFlow); writing and running use Keras 3 (TensorFlow
backend), and running a tf.keras-written file uses tf_keras when it is installed. ``edit`` widens the
LSTMs inside a model of any shape in place (see ``editor``); ``signature`` and ``run_graph`` describe
and run such a model whole.
"""

from .editor import describe_edit, edit
from .graph_runtime import run_graph, signature
from .reader import read
from .runtime import run
from .writer import write

__all__ = ["read", "write", "run", "edit", "describe_edit", "signature", "run_graph"]
