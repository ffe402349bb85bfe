"""The click group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from .. import __version__
from .convert_cmd import convert
from .inspect_cmd import inspect
from .roundtrip_cmd import roundtrip
from .verify_cmd import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstmconvert")
def cli() -> None:
    """Turn trained unidirectional LSTMs into bidirectional ones, and move LSTM models between
    PyTorch (.pt/.pth/.pt2), Keras (.keras/.h5) and ONNX (.onnx)."""


cli.add_command(convert)
cli.add_command(inspect)
cli.add_command(verify)
cli.add_command(roundtrip)
