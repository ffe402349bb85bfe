"""The one rule for options that cannot apply: an error that names the option and says why.

An option the user gave (on the command line or through the environment, not a default) that
cannot change what a command does is refused with exit 2, never silently ignored. Each command lists
its cases with ``refuse_given``; the read hints follow the same rule in every command
(``refuse_read_hints``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import click
from click.core import ParameterSource

from ..errors import LstmConvertError
from ..registry import format_for_path

READ_HINTS = ("embedding", "head", "batch_first", "readout")


class InapplicableOptionError(LstmConvertError):
    """An option was given that cannot affect this command."""


def given(ctx: click.Context, name: str) -> bool:
    """Did the user give option ``name`` (its parameter name), rather than leave its default?"""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def spelling(ctx: click.Context, name: str) -> str:
    """The option as given: ``--no-preserve`` rather than ``--preserve``, ``-j`` or ``--jobs``..."""
    param = next(p for p in ctx.command.params if p.name == name)
    value = ctx.params.get(name)
    if getattr(param, "secondary_opts", None) and value is False:
        return param.secondary_opts[0]
    return max(param.opts, key=len)


def refuse_given(ctx: click.Context, names: Iterable[str], why: str, where: Optional[object] = None) -> None:
    """Raise for the first of ``names`` the user gave: "<where>: <option> does not apply: <why>"."""
    for name in names:
        if given(ctx, name):
            prefix = f"{where}: " if where is not None else ""
            raise InapplicableOptionError(f"{prefix}{spelling(ctx, name)} does not apply: {why}")


def refuse_read_hints(ctx: click.Context, paths: Iterable[Path], fmt: Optional[str]) -> None:
    """--embedding/--head/--batch-first/--readout describe PyTorch state_dicts; a file that records its
    own embedding, head, layout and readout (Keras, ONNX) cannot take them."""
    for path in paths:
        info = format_for_path(path, fmt)
        if not info.read_hints:
            refuse_given(ctx, READ_HINTS, f"a {info.name} file records its own embedding, head, layout and readout "
                                          "(these options describe PyTorch state_dicts)", where=path)
