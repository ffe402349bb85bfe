"""Options several subcommands share, and their translation into API keyword arguments."""

from __future__ import annotations

import functools

import click

from ..registry import format_names

FORMAT_CHOICE = click.Choice(format_names())


def read_hint_options(func):
    """--embedding, --head, --batch-first/--seq-first, --readout: what a checkpoint cannot tell."""

    @click.option("--embedding", metavar="NAME", help="State-dict prefix of the embedding (PyTorch), when ambiguous.")
    @click.option("--head", metavar="NAME[:ACT],...",
                  help="State-dict prefixes of the head layers (PyTorch), when ambiguous, each with the activation "
                       "that follows it when the file does not record it, e.g. mlp.0:relu,mlp.2.")
    @click.option("--batch-first/--seq-first", "batch_first", default=None,
                  help="Input layout of a PyTorch source (default: seq-first, as nn.LSTM).")
    @click.option("--readout", type=click.Choice(["sequence", "last"]), default=None,
                  help="PyTorch source: output every step (default) or only the last state (h_n).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def hints_from(kwargs: dict) -> dict:
    """Pop the read-hint options out of a command's kwargs, keeping only those given."""
    names = ("embedding", "head", "batch_first", "readout")
    return {n: v for n in names if (v := kwargs.pop(n, None)) is not None}


def echo_json(result) -> None:
    """Print a command's result as JSON (``--json``); json is imported here, not at every start."""
    import json

    click.echo(json.dumps(result, indent=2))
