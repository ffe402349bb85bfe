"""``lstmconvert convert SRC -o DST``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .commands import summary
from .common import FORMAT_CHOICE, echo_json, hints_from, read_hint_options
from .rules import InapplicableOptionError, refuse_given, refuse_read_hints


@click.command(short_help=summary("convert"))
@click.argument("sources", metavar="SRC...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "dst", required=True, type=click.Path(path_type=Path),
              help="Output file; or, with several SRC files or a name ending in '/', the folder that receives "
                   "<name>.<extension of --to> for each.")
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="Source format (default: from the extension).")
@click.option("--to", "dst_format", type=FORMAT_CHOICE,
              help="Target format (default: from the extension; required with an output folder).")
@click.option("--backward", type=click.Choice(["copy", "random", "zeros"]), default="copy", show_default=True,
              help="Initial weights of the new backward direction.")
@click.option("--merge", type=click.Choice(["concat", "sum", "ave", "mul"]), default="concat", show_default=True,
              help="How the two directions' outputs combine.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --backward random / --no-preserve.")
@click.option("--preserve/--no-preserve", default=True, show_default=True,
              help="Zero-pad consumers so the converted model computes what the source did.")
@click.option("--keep-direction", is_flag=True, help="Only change the format; do not widen.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32", "float64"]),
              help="Cast every weight to this dtype (default: keep the source's).")
@click.option("--opset", type=int, help="ONNX opset to write (default: the newest onnxruntime runs).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With several SRC files: convert this many at once, in worker processes.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON, for scripts.")
@click.option("--lstm", "lstms", multiple=True, metavar="NAME",
              help="Widen only this LSTM (Keras layer name, ONNX node name, state_dict prefix); repeatable. "
                   "Widens in place, in SRC's own format.")
@click.option("--consumer", "consumers", multiple=True, metavar="PREFIX[,PREFIX...]",
              help="PyTorch state_dict: the modules that read the --lstm's output (nn.Linear, nn.Conv1d, "
                   "nn.LSTM), widened on their input features; repeatable.")
@click.option("--quiet", is_flag=True,
              help="No progress bar (otherwise shown on a terminal once the command has run for 1 s).")
@read_hint_options
@click.pass_context
def convert(ctx, sources, dst: Path, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
            dtype, opset, force, jobs, as_json, lstms, consumers, quiet, **kwargs) -> int:
    """Convert SRC to a bidirectional model (or only its format) and write it to the output.

    Several SRC files (or an output ending in '/') convert into a folder, each to
    <name>.<extension of --to>, going on past files that fail. Exit status: 0 all converted,
    1 some failed, 2 bad usage or (for one file) bad input.

    A model with layers outside [Embedding] -> LSTM stack -> [Dense head] (a conv front end,
    attention, several inputs...) is widened in place, in its own format.
    """
    from .. import progress

    with progress.session(progress.wanted(quiet), "converting"):
        return _convert(ctx, sources, dst, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
                        dtype, opset, force, jobs, as_json, lstms, consumers, **kwargs)


def _convert(ctx, sources, dst: Path, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
             dtype, opset, force, jobs, as_json, lstms, consumers, **kwargs) -> int:
    from .. import progress
    from ..errors import LstmConvertError, OutsideNeutralShapeError

    into_folder = len(sources) > 1 or dst.is_dir() or str(dst).endswith(("/", os.sep))
    _refuse_inapplicable(ctx, sources, dst, src_format, dst_format, into_folder)
    consumers = tuple(c.strip() for group in consumers for c in group.split(",") if c.strip())
    if into_folder:
        return _convert_into_folder(sources, dst, dst_format, jobs, as_json, src_format=src_format,
                                    backward=backward, merge=merge, preserve=preserve, seed=seed,
                                    keep_direction=keep_direction, dtype=dtype, opset=opset, force=force,
                                    **hints_from(kwargs))
    (src,) = sources
    hints = hints_from(kwargs)
    if consumers or (lstms and _same_format(src, dst, src_format, dst_format)):
        if hints:  # they describe how to read a pure LSTM model; an in-place edit reads none
            raise LstmConvertError(f"{src}: --{next(iter(hints)).replace('_', '-')} does not apply to in-place "
                                   "widening (--lstm/--consumer with DST in the source's format)")
        return _widen_in_place(ctx, src, dst, src_format, dst_format, backward, merge, seed, preserve, force,
                               lstms, consumers, as_json=as_json)
    if lstms:  # another format: the named LSTM alone, read as a pure model (features in, sequence out)
        if len(lstms) > 1:
            raise LstmConvertError(f"{src}: a conversion to another format reads one LSTM alone; give one --lstm")
        hints["lstm"] = lstms[0]
    from ..batch import convert_file

    try:
        result = convert_file(src, dst, src_format=src_format, dst_format=dst_format, backward=backward,
                              merge=merge, preserve=preserve, seed=seed, keep_direction=keep_direction,
                              dtype=dtype, opset=opset, force=force, **hints)
    except OutsideNeutralShapeError as exc:
        if keep_direction or lstms:
            raise
        if not _same_format(src, dst, src_format, dst_format):
            from ..registry import format_for_path

            detail = str(exc).removeprefix(f"{src}: ")
            # --lstm is a read hint: formats that take read hints can read one LSTM alone.
            alone = ", or convert the LSTM stack alone with --lstm" if format_for_path(src, src_format).read_hints else ""
            raise OutsideNeutralShapeError(
                f"{src}: holds {exc.layer}; widen it in its own format ({src.suffix or src_format}), where "
                f"in-place widening keeps every other layer{alone} ({detail})", exc.layer) from exc
        return _widen_in_place(ctx, src, dst, src_format, dst_format, backward, merge, seed, preserve, force,
                               (), (), as_json=as_json)
    progress.clear()
    if as_json:
        echo_json(result.to_dict())
        return 0
    click.echo(f"wrote {', '.join(w['path'] for w in result.written)} ({result.describe()})")
    if result.preservation is not None:
        click.echo(f"function preservation: {result.preservation['status']} ({result.preservation['reason']})")
    if result.assumed:
        click.echo(f"note: {result.assumed}")
    return 0


def _refuse_inapplicable(ctx, sources, dst: Path, src_format, dst_format, into_folder: bool) -> None:
    """Every option given must be able to change this conversion (see ``rules``)."""
    from ..registry import format_for_path

    src = ", ".join(map(str, sources))
    if ctx.params["keep_direction"]:
        refuse_given(ctx, ("backward", "merge", "preserve", "seed"),
                     "--keep-direction converts the format only; nothing is widened", where=src)
    elif ctx.params["backward"] != "random" and ctx.params["preserve"]:
        refuse_given(ctx, ("seed",), f"nothing is drawn at random with --backward {ctx.params['backward']} "
                                     "(--seed seeds --backward random and --no-preserve)", where=src)
    if into_folder:
        if ctx.params["dst_format"] is None:
            raise InapplicableOptionError(
                f"{dst}: -o names a folder here (several SRC files, an existing folder or a trailing '/'); "
                "pass --to torch|keras|onnx to choose the format of the files written into it"
            )
        refuse_given(ctx, ("lstms", "consumers"), "in-place widening takes one SRC and one output file")
        target_format = dst_format
    else:
        refuse_given(ctx, ("jobs",), "there is one SRC file; -j converts several at once", where=src)
        target_format = format_for_path(dst, dst_format).name
    if target_format != "onnx":
        refuse_given(ctx, ("opset",), f"the target is {target_format}, not ONNX", where=dst)
    refuse_read_hints(ctx, sources, src_format)


def _convert_into_folder(sources, outdir: Path, to: str, jobs: int, as_json: bool, **options) -> int:
    """Several files: one line per file as it finishes, failures on stderr, then a summary."""
    from ..batch import convert_many

    def report(result) -> None:
        for warning in result.warnings:
            where = "" if result.source in warning else f"{result.source}: "
            click.echo(f"lstmconvert: warning: {where}{warning}", err=True)
        if not result.ok:
            click.echo(f"lstmconvert: error: {result.error}", err=True)
        elif not as_json:
            verdict = f"; preservation {result.preservation['status']}" if result.preservation else ""
            click.echo(f"ok  {result.source} -> {result.target} ({result.describe()}{verdict})")
            if result.assumed:
                click.echo(f"    note: {result.assumed}")

    results = convert_many(sources, outdir, to=to, jobs=jobs, on_result=report, **options)
    failed = [r for r in results if not r.ok]
    if as_json:
        echo_json({"converted": len(results) - len(failed), "failed": len(failed),
                   "files": [r.to_dict() for r in results]})
    else:
        tail = f"; {len(failed)} failed: {', '.join(r.source for r in failed)}" if failed else ""
        click.echo(f"converted {len(results) - len(failed)} of {len(results)} files into {outdir}{tail}")
    return 1 if failed else 0


def _same_format(src: Path, dst: Path, src_format, dst_format) -> bool:
    from ..registry import format_for_path

    return format_for_path(src, src_format).name == format_for_path(dst, dst_format).name


def _widen_in_place(ctx, src, dst, src_format, dst_format, backward, merge, seed, preserve, force, lstms, consumers,
                    *, as_json=False) -> int:
    """The model holds layers outside the neutral shape: widen its LSTMs inside the file's own format."""
    from ..api import widen_in_place
    from ..errors import LstmConvertError

    refuse_given(ctx, ("keep_direction", "dtype", "opset"),
                 "in-place widening keeps the file's own format, dtypes and opset", where=src)
    if not _same_format(src, dst, src_format, dst_format):
        raise LstmConvertError("in-place widening writes the source's own format; give DST the same "
                               "extension as SRC").at(src)
    result = widen_in_place(src, dst, format=src_format, lstm=lstms, consumers=consumers, backward=backward,
                            merge=merge, preserve=preserve, seed=seed, force=force)
    if as_json:
        echo_json({
            "source": str(src), "target": str(dst), "mode": "in place", "merge": merge, "backward": backward,
            "written": [{"path": str(dst), "bytes": Path(dst).stat().st_size}],
            "widened": list(result.widened), "consumers": list(result.consumers),
            "preservation": {"status": result.preservation.status, "reason": result.preservation.reason},
            "notes": list(result.notes), "ok": True})
        return 0
    click.echo(f"wrote {dst} (in place: bidirectional {', '.join(map(repr, result.widened))}, "
               f"merge={merge}, backward={backward}; consumers widened: "
               f"{', '.join(map(repr, result.consumers)) or 'none'})")
    click.echo(f"function preservation: {result.preservation.status} ({result.preservation.reason})")
    for note in result.notes:
        click.echo(f"note: {note}")
    return 0
