"""6. In place: widening an LSTM inside a model of any shape costs what widening a pure stack costs.

A ``ConvTagger`` (embedding -> Conv1d -> LSTM stack -> Linear, saved as a state_dict) is widened in
place (``convert --lstm lstm --consumer fc``) and set against the pure ``Tagger`` of the same sizes
converted .pt -> .pt, at the fixture tagger's size and at section 3's large size. Both are cold CLI
runs taking turns, so the machine's load hits them alike; the ratio is in place / pure stack.
"""

from __future__ import annotations

from ..context import Context
from ..measure import (Job, MeasurementFailed, interleaved, lstmconvert_command, median_seconds, python, remove_output,
                       run_cold, script, settle)
from ..presets import ModelSize
from ..report import Row, at_most, failed, seconds, size

SECTION = "6 in place"
# "At most what a pure stack costs"; 5% on top for run-to-run noise between two cold processes.
LIMIT = 1.05
TAGGER_SIZE = ModelSize(vocab=12, embed=8, hidden=16, layers=2, tags=2)  # fixtures/torch/tagger.pt


def run(ctx: Context) -> list:
    rows = []
    for label, model, repeats in (("tagger size", TAGGER_SIZE, ctx.preset.repeats),
                                  ("large", ctx.preset.scale, ctx.preset.scale_repeats)):
        rows += _case(ctx, label, model, repeats)
    return rows


def _case(ctx: Context, label: str, model: ModelSize, repeats: int) -> list:
    sources = {"pure": ctx.path(f"{label}_pure.pt"), "inplace": ctx.path(f"{label}_crnn.pt")}
    outputs = {name: ctx.path(f"{label}_{name}_bi.pt") for name in sources}
    try:
        for name, source in sources.items():
            made = run_cold([python(), script("make_torch_model.py"), source] + model.args()
                            + (["--conv"] if name == "inplace" else []))
            if not made.ok:
                return [failed(SECTION, f"{label}: generate {name}", made.failure(), "")]
        settle()
        ctx.note(f"in place, {label}: {model}; ConvTagger .pt {size(sources['inplace'].stat().st_size)}, "
                 f"Tagger .pt {size(sources['pure'].stat().st_size)}")
        extra = {"pure": [], "inplace": ["--lstm", "lstm", "--consumer", "fc"]}
        jobs = {name: Job(lstmconvert_command() + ["convert", sources[name], "-o", outputs[name], "--force"]
                          + extra[name], before=lambda out=outputs[name]: (remove_output(out), settle()))
                for name in sources}
        results = interleaved(jobs, repeats, warmup=label == "tagger size")
        return _rows(label, results)
    finally:
        for path in list(sources.values()) + list(outputs.values()):
            remove_output(path)


def _rows(label: str, results: dict) -> list:
    what = f"{label} .pt→bi .pt in place (baseline: the pure stack)"
    for name, runs in results.items():
        if isinstance(runs, MeasurementFailed):
            return [failed(SECTION, f"{what}: {name}", str(runs), f"≤ {LIMIT:g}×")]
    ours, pure = results["inplace"], results["pure"]
    wall, base = median_seconds(ours), median_seconds(pure)
    peak, base_peak = max(r.peak_rss for r in ours), max(r.peak_rss for r in pure)
    return [
        Row(SECTION, f"{what}: CLI wall, cold", seconds(wall), seconds(base), wall / base, f"≤ {LIMIT:g}×",
            at_most(wall / base, LIMIT)),
        Row(SECTION, f"{what}: peak RSS", size(peak), size(base_peak), peak / base_peak, f"≤ {LIMIT:g}×",
            at_most(peak / base_peak, LIMIT)),
    ]
