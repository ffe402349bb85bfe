"""2. The everyday conversion: the fixture taggers to bidirectional ONNX, CLI against users' scripts.

Every side runs as a cold subprocess, as a user would run it. The user-written outputs are checked
against ours in onnxruntime (same ids in, largest output difference reported), so the timings
compare programs that produce the same model.
"""

from __future__ import annotations

from ..agreement import agreement_note, runs_at
from ..context import FIXTURES, Context
from ..measure import (MeasurementFailed, lstmconvert_command, median_seconds, python, remove_output,
                       repeat_cold, script)
from ..report import Row, at_most, failed, seconds

SECTION = "2 tagger"
DYNAMO_LIMIT, TORCHSCRIPT_LIMIT, FLOOR_LIMIT = 0.2, 0.8, 0.3
CHECK_STEPS = 10  # sequence length of the agreement check; also the dynamo exporter's example length
TORCH_TAGGER = FIXTURES / "torch" / "tagger.pt"
KERAS_TAGGER = FIXTURES / "keras" / "tagger.keras"


def run(ctx: Context) -> list:
    return _torch_rows(ctx) + _keras_rows(ctx)


def _timed(ctx: Context, command: list, output) -> float:
    """Median cold wall time of ``command``, which writes ``output`` (removed before every run)."""
    return median_seconds(repeat_cold(command, ctx.preset.repeats, before=lambda: remove_output(output)))


def _torch_rows(ctx: Context) -> list:
    ours_out = ctx.path("tagger_ours.onnx")
    rows = []
    try:
        ours = _timed(ctx, lstmconvert_command() + ["convert", TORCH_TAGGER, "-o", ours_out, "--force"], ours_out)
    except MeasurementFailed as exc:
        return [failed(SECTION, ".pt→bi .onnx, CLI", str(exc), f"≤ {DYNAMO_LIMIT}× dynamo script")]
    for label, flag, limit in (("dynamo", [], DYNAMO_LIMIT), ("dynamo=False", ["--no-dynamo"], TORCHSCRIPT_LIMIT)):
        theirs_out = ctx.path(f"tagger_user_{'dynamo' if not flag else 'ts'}.onnx")
        command = [python(), script("user_torch_to_onnx.py"), TORCH_TAGGER, theirs_out,
                   f"--example-steps={CHECK_STEPS}"] + flag
        measurement = f".pt→bi .onnx: CLI vs user script, torch.onnx.export {label}"
        try:
            theirs = _timed(ctx, command, theirs_out)
        except MeasurementFailed as exc:
            rows.append(failed(SECTION, measurement, f"ours {seconds(ours)}; script {exc}", f"≤ {limit}×"))
            continue
        ctx.note(agreement_note(f"tagger .pt→.onnx, user script ({label})", ours_out, theirs_out, 12, CHECK_STEPS))
        problem = runs_at(theirs_out, 12, CHECK_STEPS + 3)
        if problem:
            ctx.note(f"the {label} export, traced with {CHECK_STEPS} steps, fails on {CHECK_STEPS + 3} steps "
                     f"despite its dynamic time axis: {problem}")
        rows.append(Row(SECTION, measurement, seconds(ours), seconds(theirs), ours / theirs, f"≤ {limit}×",
                        at_most(ours / theirs, limit)))
    rows.append(_floor_row(ctx, ".pt→bi .onnx: CLI vs `import torch, onnx`", ours, "torch, onnx"))
    return rows


def _keras_rows(ctx: Context) -> list:
    ours_out = ctx.path("keras_tagger_ours.onnx")
    theirs_out = ctx.path("keras_tagger_user.onnx")
    measurement = ".keras→bi .onnx: CLI vs user script, Keras model.export(format='onnx')"
    try:
        ours = _timed(ctx, lstmconvert_command() + ["convert", KERAS_TAGGER, "-o", ours_out, "--force"], ours_out)
    except MeasurementFailed as exc:
        return [failed(SECTION, measurement, str(exc))]
    try:
        theirs = _timed(ctx, [python(), script("user_keras_to_onnx.py"), KERAS_TAGGER, theirs_out], theirs_out)
    except MeasurementFailed as exc:
        rows = [failed(SECTION, measurement, f"ours {seconds(ours)}; script {exc}")]
    else:
        ctx.note(agreement_note("tagger .keras→.onnx, user script (Keras export)", ours_out, theirs_out, 20,
                                CHECK_STEPS, batch_major=True))
        rows = [Row(SECTION, measurement, seconds(ours), seconds(theirs), ours / theirs)]
    rows.append(_floor_row(ctx, ".keras→bi .onnx: CLI vs `import h5py, onnx`", ours, "h5py, onnx", limit=None))
    return rows


def _floor_row(ctx: Context, measurement: str, ours: float, modules: str, limit=FLOOR_LIMIT) -> Row:
    """Ours against importing just the libraries the conversion needs (the start-up floor)."""
    try:
        floor = median_seconds(repeat_cold([python(), "-c", f"import {modules}"], ctx.preset.repeats))
    except MeasurementFailed as exc:
        return failed(SECTION, measurement, str(exc))
    above = ours - floor
    row = Row(SECTION, measurement, seconds(ours), seconds(floor), ours / floor)
    if limit is not None:
        row.target = f"≤ floor + {limit} s"
        row.verdict = at_most(above, limit, "s") + f" ({seconds(above)} above)"
    else:
        row.verdict = f"{seconds(above)} above"
    return row
