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
@read_hint_options
def convert(src: Path, dst: Path, src_format, dst_format, backward, merge, seed, preserve, keep_direction,
            dtype, opset, force, **kwargs) -> int:
    """Convert SRC to a bidirectional model (or only its format) and write it to DST."""
    from ..api import load, save
    from ..convert import to_bidirectional
    from ..errors import LstmConvertError

    model = load(src, format=src_format, **hints_from(kwargs))
    if dtype is not None and dtype != str(model.dtype):
        click.echo(f"casting weights from {model.dtype} to {dtype}")
        model = model.astype(_numpy_dtype(dtype))
    if not keep_direction:
        try:
            model = to_bidirectional(model, backward=backward, merge=merge, preserve=preserve, seed=seed)
        except LstmConvertError as exc:
            raise LstmConvertError(f"{src}: {exc}") from exc
    written = save(model, dst, format=dst_format, force=force, opset=opset)
    verdict = model.meta.get("preservation")
    summary = "format only" if keep_direction else f"bidirectional, merge={merge}, backward={backward}"
    click.echo(f"wrote {', '.join(map(str, written))} ({summary})")
    if verdict is not None:
        click.echo(f"function preservation: {verdict.status} ({verdict.reason})")
    return 0


def _numpy_dtype(name: str):
    if name == "bfloat16":  # numpy has no bfloat16 of its own
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name
