"""The click group; each subcommand lives in its own module, imported only when it runs.

``lstmconvert --help`` lists the commands from ``COMMANDS`` (their one-line summaries), so it loads
none of the subcommand modules; each command takes its ``short_help`` from the same table.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

# name -> (module in this package, one-line summary)
COMMANDS = {
    "convert": ("convert_cmd", "Make SRC's LSTMs bidirectional (or change only its format)."),
    "inspect": ("inspect_cmd", "Show PATH's layers, shapes, dtypes and parameter counts."),
    "roundtrip": ("roundtrip_cmd", "Write SRC through each format and check what comes back."),
    "verify": ("verify_cmd", "Check, in the real runtimes, that DST computes what SRC does."),
}


def summary(name: str) -> str:
    return COMMANDS[name][1]


class _LazyGroup(click.Group):
    """Subcommands imported on first use (click's documented pattern for lazy loading)."""

    def list_commands(self, ctx: click.Context) -> list:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
        return getattr(module, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary(name)) for name in self.list_commands(ctx)])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstmconvert")
def cli() -> None:
    """Turn trained unidirectional LSTMs into bidirectional ones, and move LSTM models between
    PyTorch (.pt/.pth/.pt2), Keras (.keras/.h5) and ONNX (.onnx)."""
