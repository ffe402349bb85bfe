"""Skip a test by name when a framework it runs is not installed, so each extra runs what it can.

``needs("torch", "onnx")`` at the start of a test (or a fixture, or a module) calls
``pytest.importorskip`` for every package those formats need: with ``pip install -e .[onnx,test]``
the ONNX tests run and the rest are reported as skipped, naming the missing package. A format name
stands for what reading, writing and running its files takes; any other name is a package.
"""

from __future__ import annotations

import os

import pytest

PACKAGES = {
    "torch": ("torch",),
    "keras": ("h5py", "tensorflow", "keras"),  # Keras 3 runs on the TensorFlow backend here
    "keras-read": ("h5py",),  # reading Keras files needs h5py alone
    "onnx": ("onnx", "onnxruntime"),
}


def needs(*names: str) -> None:
    for name in names:
        for package in PACKAGES.get(name, (name,)):
            if package in ("tensorflow", "keras"):
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            pytest.importorskip(package)


def needs_files(*paths) -> None:
    """``needs`` the formats of these files or extensions (".onnx"), to read, write and run them."""
    from pathlib import Path

    from lstmconvert.registry import format_for_path

    needs(*(format_for_path(Path(f"x{p}" if str(p).startswith(".") else p)).name for p in paths))
