"""``lstmconvert verify SRC DST``: does DST compute what SRC computes, in the real runtimes?"""

from __future__ import annotations

from pathlib import Path

import click

from .commands import summary
from .common import FORMAT_CHOICE, hints_from, read_hint_options
from .rules import READ_HINTS, given, refuse_read_hints


def _int_list(ctx, param, value):
    """"1,3" -> (1, 3); None stays None."""
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return sizes


def input_shape_options(func):
    """--seed, --batch, --steps, --atol, --rtol: the inputs and tolerances of a numeric check."""
    func = click.option("--rtol", type=float,
                        help="Relative tolerance (default by dtype: fp32 1e-5, fp16 1e-2, bf16 6e-2, fp64 1e-8).")(func)
    func = click.option("--atol", type=float,
                        help="Absolute tolerance (default by dtype: fp32 1e-5, fp16 1e-2, bf16 6e-2, fp64 1e-10).")(func)
    func = click.option("--steps", callback=_int_list, metavar="T,...",
                        help="Sequence lengths to test instead of the defaults (for files that only run at some lengths).")(func)
    func = click.option("--batch", "batch_sizes", callback=_int_list, metavar="N,...",
                        help="Batch sizes to test instead of the defaults.")(func)
    func = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")(func)
    return func


@click.command(short_help=summary("verify"))
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="SRC's format (default: from the extension).")
@click.option("--to", "dst_format", type=FORMAT_CHOICE, help="DST's format (default: from the extension).")
@click.option("--expect", type=click.Choice(["same", "forward-half"]), default=None,
              help="What DST must compute: SRC's output, or SRC's output in its forward half "
                   "(default: worked out from the two models' output widths).")
@input_shape_options
@click.option("--no-diagnose", is_flag=True, help="On a mismatch, skip the search for the likely cause.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--quiet", is_flag=True,
              help="No progress bar (otherwise shown on a terminal once the command has run for 1 s).")
@read_hint_options
@click.pass_context
def verify(ctx, src: Path, dst: Path, src_format, dst_format, expect, seed, batch_sizes, steps, atol, rtol, no_diagnose,
           as_json, quiet, **kwargs) -> int:
    """Run SRC and DST in their own frameworks on the same seeded inputs and compare.

    Exit status: 0 if DST matches, 1 on a mismatch (the failing inputs and the likely cause are
    printed), 2 if a file cannot be read or run.
    """
    from .. import progress
    from ..checks import verify as run_verify
    from ..registry import format_for_path

    # The read hints describe SRC (and a PyTorch DST); they must fit at least one of the two files.
    if any(given(ctx, name) for name in READ_HINTS) and not format_for_path(dst, dst_format).read_hints:
        refuse_read_hints(ctx, [src], src_format)
    with progress.session(progress.wanted(quiet), "verifying"):
        report = run_verify(src, dst, expect=expect, seed=seed, atol=atol, rtol=rtol, batch_sizes=batch_sizes,
                            steps=steps, src_format=src_format, dst_format=dst_format, diagnose=not no_diagnose,
                            **hints_from(kwargs))
    click.echo(report.to_json() if as_json else report.render_text())
    return 0 if report.passed else 1
