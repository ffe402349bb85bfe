"""The ONNX format: read graphs with ``LSTM`` operators, write them, run them in onnxruntime.

Imports only onnx, onnxruntime and numpy, so converting to or from ONNX never loads PyTorch or
TensorFlow.
"""

from __future__ import annotations

from .editor import describe_edit, edit
from .graph_run import axis_names, edited_in_place, length_inputs, output_names, run_graph, signature, token_ranges, widened_outputs
from .reader import read
from .runtime import run
from .writer import write

__all__ = ["read", "write", "run", "edit", "describe_edit", "signature", "run_graph",
           "token_ranges", "widened_outputs", "output_names", "axis_names",
           "edited_in_place", "length_inputs"]
