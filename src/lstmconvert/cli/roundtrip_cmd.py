"""``lstmconvert roundtrip SRC``: write SRC through each format, read it back, compare."""

from __future__ import annotations

from pathlib import Path

import click

from .commands import summary
from .common import FORMAT_CHOICE, hints_from, read_hint_options
from .rules import refuse_read_hints
from .verify_cmd import input_shape_options


@click.command(short_help=summary("roundtrip"))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--via", metavar="FORMATS",
              help="Comma-separated formats to go through: torch, keras, onnx, pt2, h5 (default: "
                   "torch,keras,onnx). A format named here that cannot carry SRC fails the run; by "
                   "default it is skipped with the reason.")
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="SRC's format (default: from the extension).")
@input_shape_options
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False),
              help="Write the intermediate files into this existing folder and keep them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--quiet", is_flag=True,
              help="No progress bar (otherwise shown on a terminal once the command has run for 1 s).")
@read_hint_options
@click.pass_context
def roundtrip(ctx, src: Path, via, src_format, seed, batch_sizes, steps, atol, rtol, keep, as_json, quiet, **kwargs) -> int:
    """Write SRC (as it is) through each format and read it back: weights must come back
    bit-exact and every format's runtime must compute what SRC's runtime computes.

    Exit status: 0 if every hop passes, 1 if one fails, 2 if SRC cannot be read or run.
    """
    from .. import progress
    from ..checks import roundtrip as run_roundtrip

    refuse_read_hints(ctx, [src], src_format)
    with progress.session(progress.wanted(quiet), "roundtrip"):
        report = run_roundtrip(src, via=via, seed=seed, atol=atol, rtol=rtol, batch_sizes=batch_sizes, steps=steps,
                               src_format=src_format, keep=keep, **hints_from(kwargs))
    click.echo(report.to_json() if as_json else report.render_text())
    return 0 if report.passed else 1
