"""``lstmconvert convert SRC -o DST``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import FORMAT_CHOICE, hints_from, read_hint_options


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "dst", required=True, type=click.Path(path_type=Path), help="Output file.")
@click.option("--from", "src_format", type=FORMAT_CHOICE, help="Source format (default: from the extension).")
@click.option("--to", "dst_format", type=FORMAT_CHOICE, help="Target format (default: from the extension).")
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
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@click.option("--lstm", "lstms", multiple=True, metavar="NAME",
              help="Widen only this LSTM (Keras layer name, ONNX node name, state_dict prefix); repeatable. "
                   "Widens in place, in SRC's own format.")
@click.option("--consumer", "consumers", multiple=True, metavar="PREFIX[,PREFIX...]",
              help="PyTorch state_dict: the modules that read the --lstm's output (nn.Linear, nn.Conv1d, "
                   "nn.LSTM), widened on their input features; repeatable.")
@click.option("--quiet", is_flag=True,
              help="No progress bar (otherwise shown on a terminal once the command has run for 1 s).")
@read_hint_options
def convert(src: Path, dst: Path, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
            dtype, opset, force, lstms, consumers, quiet, **kwargs) -> int:
    """Convert SRC to a bidirectional model (or only its format) and write it to DST.

    A model with layers outside [Embedding] -> LSTM stack -> [Dense head] (a conv front end,
    attention, several inputs...) is widened in place, in its own format.
    """
    from .. import progress

    with progress.session(progress.wanted(quiet), "converting"):
        return _convert(src, dst, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
                        dtype, opset, force, lstms, consumers, **kwargs)


def _convert(src: Path, dst: Path, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
             dtype, opset, force, lstms, consumers, **kwargs) -> int:
    from .. import progress
    from ..api import load, save
    from ..convert import to_bidirectional
    from ..errors import LstmConvertError, OutsideNeutralShapeError

    consumers = tuple(c.strip() for group in consumers for c in group.split(",") if c.strip())
    if lstms or consumers:
        return _widen_in_place(src, dst, src_format, dst_format, backward, merge, seed, preserve, force,
                               lstms, consumers, keep_direction=keep_direction, dtype=dtype, opset=opset)
    try:
        model = load(src, format=src_format, **hints_from(kwargs))
    except OutsideNeutralShapeError as exc:
        if keep_direction or not _same_format(src, dst, src_format, dst_format):
            raise
        return _widen_in_place(src, dst, src_format, dst_format, backward, merge, seed, preserve, force,
                               (), (), keep_direction=False, dtype=dtype, opset=opset)
    if dtype is not None and dtype != str(model.dtype):
        click.echo(f"casting weights from {model.dtype} to {dtype}")
        model = model.astype(_numpy_dtype(dtype))
    if not keep_direction:
        try:
            with progress.phase("converting"):
                model = to_bidirectional(model, backward=backward, merge=merge, preserve=preserve, seed=seed)
        except LstmConvertError as exc:
            raise LstmConvertError(f"{src}: {exc}") from exc
    written = save(model, dst, format=dst_format, force=force, opset=opset)
    progress.clear()
    verdict = model.meta.get("preservation")
    summary = "format only" if keep_direction else f"bidirectional, merge={merge}, backward={backward}"
    click.echo(f"wrote {', '.join(map(str, written))} ({summary})")
    if verdict is not None:
        click.echo(f"function preservation: {verdict.status} ({verdict.reason})")
    return 0


def _same_format(src: Path, dst: Path, src_format, dst_format) -> bool:
    from ..registry import format_for_path

    return format_for_path(src, src_format).name == format_for_path(dst, dst_format).name


def _widen_in_place(src, dst, src_format, dst_format, backward, merge, seed, preserve, force, lstms, consumers,
                    *, keep_direction, dtype, opset) -> int:
    """The model holds layers outside the neutral shape: widen its LSTMs inside the file's own format."""
    from ..api import widen_in_place
    from ..errors import LstmConvertError

    for flag, given in (("--keep-direction", keep_direction), ("--dtype", dtype), ("--opset", opset)):
        if given:
            raise LstmConvertError(f"{src}: {flag} does not apply to in-place widening (it keeps the file's "
                                   "own format, dtypes and opset)")
    if not _same_format(src, dst, src_format, dst_format):
        raise LstmConvertError(f"{src}: in-place widening writes the source's own format; give DST the same "
                               "extension as SRC")
    result = widen_in_place(src, dst, format=src_format, lstm=lstms, consumers=consumers, backward=backward,
                            merge=merge, preserve=preserve, seed=seed, force=force)
    click.echo(f"wrote {dst} (in place: bidirectional {', '.join(map(repr, result.widened))}, "
               f"merge={merge}, backward={backward}; consumers widened: "
               f"{', '.join(map(repr, result.consumers)) or 'none'})")
    click.echo(f"function preservation: {result.preservation.status} ({result.preservation.reason})")
    for note in result.notes:
        click.echo(f"note: {note}")
    return 0


def _numpy_dtype(name: str):
    if name == "bfloat16":  # numpy has no bfloat16 of its own
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name
