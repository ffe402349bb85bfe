"""3. Scale: a large Tagger converted by the CLI to .pt, .onnx and .keras; time and memory.

The unidirectional model is generated on the fly (a state_dict in the scratch folder, deleted with
it). Each conversion is a cold CLI run; its wall time is set against the I/O floor (copying the
bytes it wrote) and its peak resident memory against the size of what it wrote.
"""

from __future__ import annotations

import statistics

from ..agreement import runs_at
from ..context import Context
from ..measure import (MeasurementFailed, lstmconvert_command, output_bytes, output_files, python, remove_output,
                       repeat_cold, run_cold, script, time_copy)
from ..report import Row, at_most, failed, seconds, size

SECTION = "3 scale"
TIME_LIMIT, MEMORY_LIMIT = 3.0, 1.5  # × I/O floor, × output size
TARGETS = (".pt", ".onnx", ".keras")
PROTOBUF_LIMIT = 2**31


def run(ctx: Context) -> list:
    model = ctx.preset.scale
    source = ctx.path("large_uni.pt")
    made = run_cold([python(), script("make_torch_model.py"), source] + model.args())
    if not made.ok:
        return [failed(SECTION, f"generate {model}", made.failure(), "")]
    ctx.note(f"scale model: {model}; unidirectional .pt {size(source.stat().st_size)}")
    rows = []
    try:
        for ext in TARGETS:
            rows += _convert(ctx, source, ext)
    finally:
        source.unlink(missing_ok=True)
    return rows


def _convert(ctx: Context, source, ext: str) -> list:
    output = ctx.path(f"large_bi{ext}")
    command = lstmconvert_command() + ["convert", source, "-o", output, "--force"]
    what = f".pt→bi {ext}"
    try:
        runs = repeat_cold(command, ctx.preset.scale_repeats, before=lambda: remove_output(output))
    except MeasurementFailed as exc:
        hint = " (2 GB protobuf limit)" if "2GB" in str(exc) or "2 GB" in str(exc) or "protobuf" in str(exc) else ""
        return [failed(SECTION, f"{what}: wall time{hint}", str(exc), f"≤ {TIME_LIMIT:g}× I/O floor")]
    try:
        wall = statistics.median(r.seconds for r in runs)
        peak = max(r.peak_rss for r in runs)
        written = output_bytes(output)
        floor = time_copy(output, ctx.preset.scale_repeats)
        files = ", ".join(f"{p.name} {size(p.stat().st_size)}" for p in output_files(output))
        ctx.note(f"{what}: wrote {files}")
        if ext == ".onnx":
            _note_onnx(ctx, output, written)
    finally:
        remove_output(output)
    return [
        Row(SECTION, f"{what}: wall (baseline: copying the {size(written)} written)", seconds(wall), seconds(floor),
            wall / floor, f"≤ {TIME_LIMIT:g}×", at_most(wall / floor, TIME_LIMIT)),
        Row(SECTION, f"{what}: peak RSS (baseline: output size)", size(peak), size(written), peak / written,
            f"≤ {MEMORY_LIMIT:g}×", at_most(peak / written, MEMORY_LIMIT)),
    ]


def _note_onnx(ctx: Context, output, written: int) -> None:
    """Whether the ONNX output kept clear of protobuf's 2 GB limit, and whether onnxruntime loads it."""
    side = output_files(output)[1:]
    layout = "external data" if side else "a single protobuf"
    if not side and written >= PROTOBUF_LIMIT:
        ctx.note(f".pt→bi .onnx: {size(written)} in {layout}, past protobuf's 2 GB limit")
    problem = runs_at(output, ctx.preset.scale.vocab, 5)
    ctx.note(f".pt→bi .onnx: {size(written)} as {layout}; "
             + ("onnxruntime loads and runs it" if problem is None else f"onnxruntime fails: {problem}"))
