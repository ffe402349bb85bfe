"""2. The everyday conversion: the fixture taggers to bidirectional ONNX, CLI against users' scripts.

Every side runs as a cold subprocess, as a user would run it, and the sides take turns run by run
(see ``measure.interleaved``), so a change in the machine's load hits them alike. The user-written
outputs are checked against ours in onnxruntime (same ids in, largest output difference noted), so
the timings compare programs that produce the same model.
"""

from __future__ import annotations

from ..agreement import agreement_note, runs_at
from ..context import FIXTURES, Context
from ..measure import (Job, MeasurementFailed, interleaved, lstmconvert_command, median_seconds, python,
                       remove_output, run_cold, script)
from ..report import Row, at_most, failed, seconds

SECTION = "2 tagger"
DYNAMO_LIMIT, TORCHSCRIPT_LIMIT, FLOOR_LIMIT = 0.05, 0.2, 0.3
SAFETENSORS_LIMIT = 0.2  # .safetensors→.onnx against the dynamo=False script
CHECK_STEPS = 10  # sequence length of the agreement check; also the dynamo exporter's example length
TORCH_TAGGER = FIXTURES / "torch" / "tagger.pt"
KERAS_TAGGER = FIXTURES / "keras" / "tagger.keras"


def _writes(command: list, output) -> Job:
    """A job writing ``output``, which is deleted before every run so each run writes it afresh."""
    return Job(command, before=lambda: remove_output(output))


def _floor(modules: str) -> Job:
    return Job([python(), "-c", f"import {modules}"])


def run(ctx: Context) -> list:
    return _torch_rows(ctx) + _keras_rows(ctx)


def _torch_rows(ctx: Context) -> list:
    ours_out, safetensors_out = ctx.path("tagger_ours.onnx"), ctx.path("tagger_ours_st.onnx")
    outputs = {"dynamo": ctx.path("tagger_user_dynamo.onnx"), "dynamo=False": ctx.path("tagger_user_ts.onnx")}
    user = [python(), script("user_torch_to_onnx.py"), TORCH_TAGGER]
    safetensors_tagger = ctx.path("tagger.safetensors")
    made = run_cold([python(), "-c", "import sys, torch, safetensors.torch as st; "
                     "st.save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])",
                     TORCH_TAGGER, safetensors_tagger])  # as a user saves their state_dict (untimed)
    jobs = {
        "ours": _writes(lstmconvert_command() + ["convert", TORCH_TAGGER, "-o", ours_out, "--force"], ours_out),
        "ours .safetensors": _writes(lstmconvert_command() + ["convert", safetensors_tagger, "-o", safetensors_out,
                                                              "--force"], safetensors_out),
        "dynamo": _writes(user + [outputs["dynamo"], f"--example-steps={CHECK_STEPS}"], outputs["dynamo"]),
        "dynamo=False": _writes(user + [outputs["dynamo=False"], "--no-dynamo"], outputs["dynamo=False"]),
        "floor": _floor("onnx"),
    }
    if not made.ok:
        del jobs["ours .safetensors"]
    results = interleaved(jobs, ctx.preset.repeats)
    if isinstance(results["ours"], MeasurementFailed):
        return [failed(SECTION, ".pt→bi .onnx, CLI", str(results["ours"]), f"≤ {DYNAMO_LIMIT}× dynamo script")]
    ours = median_seconds(results["ours"])
    rows = []
    for label, limit in (("dynamo", DYNAMO_LIMIT), ("dynamo=False", TORCHSCRIPT_LIMIT)):
        measurement = f".pt→bi .onnx: CLI vs user script, torch.onnx.export {label}"
        if isinstance(results[label], MeasurementFailed):
            rows.append(failed(SECTION, measurement, f"ours {seconds(ours)}; script {results[label]}", f"≤ {limit}×"))
            continue
        theirs = median_seconds(results[label])
        rows.append(Row(SECTION, measurement, seconds(ours), seconds(theirs), ours / theirs, f"≤ {limit}×",
                        at_most(ours / theirs, limit)))
        ctx.note(agreement_note(f"tagger .pt→.onnx, user script ({label})", ours_out, outputs[label], 12, CHECK_STEPS))
    rows.append(_safetensors_row(ctx, results, safetensors_out, ours_out))
    problem = runs_at(outputs["dynamo"], 12, CHECK_STEPS + 3) if outputs["dynamo"].exists() else None
    if problem:
        ctx.note(f"the dynamo export, traced with {CHECK_STEPS} steps, fails on {CHECK_STEPS + 3} steps despite "
                 f"its dynamic time axis: {problem}")
    rows.append(_floor_row(".pt→bi .onnx: CLI vs `import onnx` (all it imports)", ours, results["floor"],
                           FLOOR_LIMIT))
    return rows


def _safetensors_row(ctx: Context, results: dict, output, pt_output) -> Row:
    """The same tagger saved with safetensors.torch.save_file, converted by the CLI."""
    measurement = ".safetensors→bi .onnx: CLI vs user script (.pt), torch.onnx.export dynamo=False"
    ours = results.get("ours .safetensors")
    if ours is None or isinstance(ours, MeasurementFailed) or isinstance(results["dynamo=False"], MeasurementFailed):
        return failed(SECTION, measurement, str(ours or "could not write the .safetensors file"),
                      f"≤ {SAFETENSORS_LIMIT}×")
    ours, theirs = median_seconds(ours), median_seconds(results["dynamo=False"])
    ctx.note(agreement_note("tagger .safetensors→.onnx against .pt→.onnx", output, pt_output, 12, CHECK_STEPS))
    return Row(SECTION, measurement, seconds(ours), seconds(theirs), ours / theirs, f"≤ {SAFETENSORS_LIMIT}×",
               at_most(ours / theirs, SAFETENSORS_LIMIT))


def _keras_rows(ctx: Context) -> list:
    ours_out, theirs_out = ctx.path("keras_tagger_ours.onnx"), ctx.path("keras_tagger_user.onnx")
    measurement = ".keras→bi .onnx: CLI vs user script, Keras model.export(format='onnx')"
    jobs = {
        "ours": _writes(lstmconvert_command() + ["convert", KERAS_TAGGER, "-o", ours_out, "--force"], ours_out),
        "theirs": _writes([python(), script("user_keras_to_onnx.py"), KERAS_TAGGER, theirs_out], theirs_out),
        "floor": _floor("h5py, onnx"),
    }
    results = interleaved(jobs, ctx.preset.repeats)
    if isinstance(results["ours"], MeasurementFailed):
        return [failed(SECTION, measurement, str(results["ours"]))]
    ours = median_seconds(results["ours"])
    if isinstance(results["theirs"], MeasurementFailed):
        rows = [failed(SECTION, measurement, f"ours {seconds(ours)}; script {results['theirs']}")]
    else:
        theirs = median_seconds(results["theirs"])
        rows = [Row(SECTION, measurement, seconds(ours), seconds(theirs), ours / theirs)]
        ctx.note(agreement_note("tagger .keras→.onnx, user script (Keras export)", ours_out, theirs_out, 20,
                                CHECK_STEPS, batch_major=True))
    rows.append(_floor_row(".keras→bi .onnx: CLI vs `import h5py, onnx`", ours, results["floor"], None))
    return rows


def _floor_row(measurement: str, ours: float, floor_runs, limit) -> Row:
    """Ours against importing just the libraries the conversion needs (the start-up floor)."""
    if isinstance(floor_runs, MeasurementFailed):
        return failed(SECTION, measurement, str(floor_runs))
    floor = median_seconds(floor_runs)
    above = ours - floor
    row = Row(SECTION, measurement, seconds(ours), seconds(floor), ours / floor)
    if limit is not None:
        row.target = f"≤ floor + {limit} s"
        row.verdict = at_most(above, limit, "s") + f" ({seconds(above)} above)"
    else:
        row.verdict = f"{seconds(above)} above"
    return row
