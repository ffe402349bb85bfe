"""``lstmconvert inspect FILE``: what is in a model file, and what a conversion would keep."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import FORMAT_CHOICE, hints_from, read_hint_options
from .rules import refuse_read_hints


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="Format (default: from the extension).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@read_hint_options
@click.pass_context
def inspect(ctx, path: Path, src_format, as_json: bool, **kwargs) -> int:
    """Show the layers, shapes, directions, dtypes and parameter counts of PATH."""
    from ..api import load
    from ..summary import assumptions, describe, render_text

    refuse_read_hints(ctx, [path], src_format)
    model = load(path, format=src_format, **hints_from(kwargs))
    report = describe(model, str(path))
    assumed = assumptions(model)
    if as_json:
        click.echo(json.dumps({**report, "assumed": assumed or None}, indent=2))
        return 0
    click.echo(render_text(report))
    if assumed:
        click.echo(f"note: {assumed}")
    return 0
