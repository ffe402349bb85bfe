"""4. Inference: onnxruntime latency of our bidirectional ONNX against torch.onnx.export's.

One unidirectional Tagger, generated on the fly, is widened twice: by ``lstmconvert convert`` and by
the user script (same weights: reverse = forward, zeros on the new inputs), exported with both torch
exporters. All files run in one worker with identical onnxruntime options, interleaved run by run; a
copy of our file runs alongside as a control, its ratio to ours showing the measurement noise.
"""

from __future__ import annotations

import json
import shutil

from ..agreement import TOLERANCE
from ..context import Context
from ..measure import lstmconvert_command, python, run_cold, script
from ..report import Row, at_most, failed

SECTION = "4 inference"
LIMIT = 1.0
THREADS = 1  # one intra-op thread: the machine's other core stays free, and timings stay steady
EXPORTERS = (("dynamo", []), ("dynamo=False", ["--no-dynamo"]))


def run(ctx: Context) -> list:
    preset = ctx.preset
    source, ours = ctx.path("inference_uni.pt"), ctx.path("inference_ours.onnx")
    made = run_cold([python(), script("make_torch_model.py"), source] + preset.inference.args())
    if not made.ok:
        return [failed(SECTION, "generate the model", made.failure())]
    converted = run_cold(lstmconvert_command() + ["convert", source, "-o", ours, "--force"])
    if not converted.ok:
        return [failed(SECTION, "ours vs torch.onnx.export", converted.failure(), f"≤ {LIMIT:g}×")]
    # A second copy of our file, timed like the others: the ratio of a file to itself is the noise.
    again = ctx.path("inference_ours_again.onnx")
    shutil.copyfile(ours, again)
    files = {"lstmconvert": ours, "lstmconvert (again)": again}
    for label, flag in EXPORTERS:
        theirs = ctx.path(f"inference_torch_{'ts' if flag else 'dynamo'}.onnx")
        # The dynamo exporter fixes the time axis at the example's length (see section 2's notes),
        # so the example has the benchmark's length.
        exported = run_cold([python(), script("user_torch_to_onnx.py"), source, theirs,
                             f"--example-steps={preset.steps}"] + flag)
        if exported.ok:
            files[label] = theirs
        else:
            ctx.note(f"inference: torch.onnx.export {label} failed: {exported.failure()}")
    timing = run_cold([python(), script("ort_latency.py"), *files.values(), f"--vocab={preset.inference.vocab}",
                       f"--steps={preset.steps}", "--batches", *map(str, preset.batches), f"--runs={preset.runs}",
                       f"--warmup={preset.warmup}", f"--threads={THREADS}"])
    if not timing.ok:
        return [failed(SECTION, "ours vs torch.onnx.export", timing.failure(), f"≤ {LIMIT:g}×")]
    result = json.loads(timing.stdout.strip().splitlines()[-1])
    ctx.note(f"inference model: {preset.inference}; T={preset.steps}; onnxruntime CPU, "
             f"{THREADS} intra-op thread, median of {preset.runs} runs after {preset.warmup} warm-up")
    rows = []
    for batch in map(str, preset.batches):
        mine, same = result["median_ms"][str(ours)][batch], result["median_ms"][str(again)][batch]
        rows.append(Row(SECTION, f"latency batch {batch}×T{preset.steps}: noise, our file vs a copy of it",
                        f"{mine:.2f} ms", f"{same:.2f} ms", mine / same))
    for label, path in list(files.items())[2:]:
        diffs = result["max_abs_diff"][str(path)]
        worst = max(d for d in diffs.values() if d is not None)
        if worst > TOLERANCE:
            ctx.note(f"inference: the {label} export's outputs DIFFER from ours by up to {worst:.1e}")
        for batch in map(str, preset.batches):
            mine, its = result["median_ms"][str(ours)][batch], result["median_ms"][str(path)][batch]
            rows.append(Row(SECTION, f"latency batch {batch}×T{preset.steps}: ours vs torch.onnx.export {label}",
                            f"{mine:.2f} ms", f"{its:.2f} ms", mine / its, f"≤ {LIMIT:g}×", at_most(mine / its, LIMIT)))
    return rows
