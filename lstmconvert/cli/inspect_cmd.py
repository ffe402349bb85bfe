"""``lstmconvert inspect FILE``: what is in a model file, and what a conversion would keep."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import FORMAT_CHOICE, hints_from, read_hint_options


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="Format (default: from the extension).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@read_hint_options
def inspect(path: Path, src_format, as_json: bool, **kwargs) -> int:
    """Show the layers, shapes, directions, dtypes and parameter counts of PATH."""
    from ..api import load
    from ..summary import describe, render_text

    model = load(path, format=src_format, **hints_from(kwargs))
    report = describe(model, str(path))
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
    return 0
