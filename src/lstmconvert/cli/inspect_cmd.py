"""``lstmconvert inspect FILE``: what is in a model file, and what a conversion would keep."""

from __future__ import annotations

from pathlib import Path

import click

from .commands import summary
from .common import FORMAT_CHOICE, echo_json, hints_from, read_hint_options
from .rules import refuse_read_hints


@click.command(short_help=summary("inspect"))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="Format (default: from the extension).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--lstm", "lstms", multiple=True, metavar="NAME",
              help="Show the whole model as in-place widening of this LSTM would change it; repeatable.")
@click.option("--consumer", "consumers", multiple=True, metavar="PREFIX[,PREFIX...]",
              help="PyTorch state_dict: the modules that read the --lstm's output; repeatable.")
@read_hint_options
@click.pass_context
def inspect(ctx, path: Path, src_format, as_json: bool, lstms, consumers, **kwargs) -> int:
    """Show the layers, shapes, directions, dtypes and parameter counts of PATH.

    A model with layers outside [Embedding] -> LSTM stack -> [Dense head] is shown whole: every
    layer, its role for in-place widening (lstm, consumer, through, other) and what widening changes.
    """
    from ..api import load
    from ..errors import LstmConvertError, OutsideNeutralShapeError
    from ..summary import assumptions, describe, render_text

    refuse_read_hints(ctx, [path], src_format)
    consumers = tuple(c.strip() for group in consumers for c in group.split(",") if c.strip())
    hints = hints_from(kwargs)
    if (lstms or consumers) and hints:
        raise LstmConvertError(f"{path}: --{next(iter(hints)).replace('_', '-')} reads a pure LSTM model; it does not "
                               "apply with --lstm/--consumer, which show the whole model")
    if lstms or consumers:
        return _whole_model(path, src_format, as_json, lstms, consumers, reason=None)
    try:
        model = load(path, format=src_format, **hints)
    except OutsideNeutralShapeError as exc:
        if hints:  # the user asked for a pure-stack reading: say why it failed
            raise
        return _whole_model(path, src_format, as_json, (), (), reason=exc)
    report = describe(model, str(path))
    assumed = assumptions(model)
    if as_json:
        echo_json({**report, "assumed": assumed or None})
        return 0
    click.echo(render_text(report))
    if assumed:
        click.echo(f"note: {assumed}")
    return 0


def _whole_model(path: Path, src_format, as_json: bool, lstms, consumers, reason) -> int:
    """Every layer of a model of any shape, from the format's ``describe_edit``."""
    from ..api import check_source
    from ..errors import LstmConvertError
    from ..options import EditRequest
    from ..registry import format_for_path, format_module

    info = format_for_path(path, src_format)
    check_source(path)
    describe_edit = getattr(format_module(info), "describe_edit", None)
    if describe_edit is None:
        raise LstmConvertError(f"{path}: the {info.name} format cannot describe in-place widening")
    try:
        rows = describe_edit(path, EditRequest(lstms=tuple(lstms), consumers=tuple(consumers)))
    except LstmConvertError as exc:
        raise exc if str(path) in str(exc) else LstmConvertError(f"{path}: {exc}") from exc
    why = (f"holds {reason.layer}, outside [Embedding] -> LSTM stack -> [Dense head]; `lstmconvert convert` widens "
           "it in place, in its own format" if reason is not None else "as in-place widening would change it")
    if as_json:
        echo_json({"file": str(path), "format": info.name, "whole_model": True, "summary": why,
                   "layers": rows})
        return 0
    click.echo(f"{path} ({info.name}): {why}")
    width = max([len(r["name"]) for r in rows] + [4])
    kind = max([len(r["type"]) for r in rows] + [4])
    click.echo(f"  {'name':<{width}}  {'type':<{kind}}  {'role':<8}  change")
    for row in rows:
        click.echo(f"  {row['name']:<{width}}  {row['type']:<{kind}}  {row['role']:<8}  {row['change'] or '-'}")
    return 0
