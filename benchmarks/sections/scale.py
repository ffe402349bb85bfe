"""3. Scale: a large Tagger converted by the CLI to .pt, .onnx and .keras; time and memory.

The unidirectional model is generated on the fly (a state_dict in the scratch folder, deleted with
it). Each conversion is a cold CLI run; its wall time is set against the I/O floor (copying the
bytes it wrote) and its peak resident memory against the size of what it wrote. The conversions
and the import floors of their libraries take turns run by run, so the machine's load hits them
alike; wall time minus the import floor shows the conversion's own work.
"""

from __future__ import annotations

from ..agreement import runs_at
from ..context import Context
from ..measure import (Job, MeasurementFailed, interleaved, lstmconvert_command, median_seconds, output_bytes,
                       output_files, python, remove_output, run_cold, script, settle, time_copy)
from ..report import Row, at_most, failed, seconds, size

SECTION = "3 scale"
TIME_LIMIT, MEMORY_LIMIT = 3.0, 1.5  # × I/O floor, × output size
ONNX_MEMORY_LIMIT = 1.0  # .pt→.onnx peak RSS, × output size
DYNAMO_LIMIT = 0.25  # .pt→.onnx wall, × the user's dynamo export script
KERAS_LIMIT = 2.0  # .pt→.keras wall, × our own .pt→.onnx
# Target extension -> the libraries its conversion from .pt needs (the start-up floor).
# A .pt is read without torch, and .keras is written with h5py alone (no Keras, no TensorFlow).
TARGETS = {".pt": "torch", ".onnx": "onnx", ".keras": "h5py"}
PROTOBUF_LIMIT = 2**31


def run(ctx: Context) -> list:
    model = ctx.preset.scale
    source = ctx.path("large_uni.pt")
    made = run_cold([python(), script("make_torch_model.py"), source] + model.args())
    settle()
    if not made.ok:
        return [failed(SECTION, f"generate {model}", made.failure(), "")]
    ctx.note(f"scale model: {model}; unidirectional .pt {size(source.stat().st_size)}")
    outputs = {ext: ctx.path(f"large_bi{ext}") for ext in TARGETS}
    jobs = {}
    for ext, output in outputs.items():
        jobs[ext] = Job(lstmconvert_command() + ["convert", source, "-o", output, "--force"],
                        before=lambda output=output: (remove_output(output), settle()))
        jobs[f"import {ext}"] = Job([python(), "-c", f"import {TARGETS[ext]}"])
    dynamo_out = ctx.path("large_user_dynamo.onnx")
    jobs["dynamo script"] = Job([python(), script("user_torch_to_onnx.py"), source, dynamo_out],
                                before=lambda: (remove_output(dynamo_out), settle()))
    rows = []
    try:
        # No warm-up round: each conversion takes long enough that caches barely matter.
        results = interleaved(jobs, ctx.preset.scale_repeats, warmup=False)
        for ext in TARGETS:
            rows += _rows(ctx, ext, outputs[ext], results[ext], results[f"import {ext}"])
        rows += _ratio_rows(results)
    finally:
        source.unlink(missing_ok=True)
        for output in list(outputs.values()) + [dynamo_out]:
            remove_output(output)
    return rows


def _ratio_rows(results: dict) -> list:
    """.pt→.onnx against the user's dynamo export of the same model; .pt→.keras against .pt→.onnx."""
    rows = []
    for measurement, ours, theirs, limit in (
        (".pt→bi .onnx: CLI vs user script, torch.onnx.export dynamo", results[".onnx"], results["dynamo script"],
         DYNAMO_LIMIT),
        (".pt→bi .keras: CLI vs our own .pt→bi .onnx", results[".keras"], results[".onnx"], KERAS_LIMIT),
    ):
        if isinstance(ours, MeasurementFailed) or isinstance(theirs, MeasurementFailed):
            problem = ours if isinstance(ours, MeasurementFailed) else theirs
            rows.append(failed(SECTION, measurement, str(problem), f"≤ {limit:g}×"))
            continue
        a, b = median_seconds(ours), median_seconds(theirs)
        rows.append(Row(SECTION, measurement, seconds(a), seconds(b), a / b, f"≤ {limit:g}×", at_most(a / b, limit)))
    return rows


def _rows(ctx: Context, ext: str, output, runs, floor_runs) -> list:
    what = f".pt→bi {ext}"
    if isinstance(runs, MeasurementFailed):
        text = str(runs)
        hint = " (2 GB protobuf limit?)" if any(s in text for s in ("2GB", "2 GB", "protobuf")) else ""
        return [failed(SECTION, f"{what}: wall time{hint}", text, f"≤ {TIME_LIMIT:g}× I/O floor")]
    wall = median_seconds(runs)
    peak = max(r.peak_rss for r in runs)
    written = output_bytes(output)
    copy = time_copy(output, max(3, ctx.preset.scale_repeats))
    ctx.note(f"{what}: wrote " + ", ".join(f"{p.name} {size(p.stat().st_size)}" for p in output_files(output)))
    if ext == ".onnx":
        _note_onnx(ctx, output, written)
    rows = [Row(SECTION, f"{what}: CLI wall, cold (baseline: copying the {size(written)} written)", seconds(wall),
                seconds(copy), wall / copy, f"≤ {TIME_LIMIT:g}×", at_most(wall / copy, TIME_LIMIT))]
    if not isinstance(floor_runs, MeasurementFailed):
        work = wall - median_seconds(floor_runs)
        rows.append(Row(SECTION, f"{what}: CLI wall − `import {TARGETS[ext]}` (baseline: the copy)", seconds(work),
                        seconds(copy), work / copy, f"≤ {TIME_LIMIT:g}×", at_most(work / copy, TIME_LIMIT)))
    limit = ONNX_MEMORY_LIMIT if ext == ".onnx" else MEMORY_LIMIT
    rows.append(Row(SECTION, f"{what}: peak RSS (baseline: output size)", size(peak), size(written), peak / written,
                    f"≤ {limit:g}×", at_most(peak / written, limit)))
    return rows


def _note_onnx(ctx: Context, output, written: int) -> None:
    """Whether the ONNX output kept clear of protobuf's 2 GB limit, and whether onnxruntime loads it."""
    side = output_files(output)[1:]
    layout = "external data" if side else "a single protobuf"
    if not side and written >= PROTOBUF_LIMIT:
        ctx.note(f".pt→bi .onnx: {size(written)} in {layout}, past protobuf's 2 GB limit")
    problem = runs_at(output, ctx.preset.scale.vocab, 5)
    ctx.note(f".pt→bi .onnx: {size(written)} as {layout}; "
             + ("onnxruntime loads and runs it" if problem is None else f"onnxruntime fails: {problem}"))
