"""1. CLI start-up, and which frameworks each conversion imports."""

from __future__ import annotations

import json

from ..context import FIXTURES, Context
from ..measure import (Job, MeasurementFailed, interleaved, lstmconvert_command, median_seconds, python, run_cold,
                       script)
from ..report import Row, at_most, failed, seconds

SECTION = "1 start"
HELP_LIMIT = 0.1  # seconds
SOURCES = {
    "torch": FIXTURES / "torch" / "tagger.pt",
    "keras": FIXTURES / "keras" / "tagger.keras",
    "onnx": FIXTURES / "onnx" / "torch_tagger_ts.onnx",
}
EXTENSIONS = {"torch": ".pt", "keras": ".keras", "onnx": ".onnx"}
# Frameworks a conversion must not import: (source, target) -> forbidden.
FORBIDDEN = {
    ("torch", "onnx"): ("tensorflow", "keras"),
    ("keras", "onnx"): ("torch", "tensorflow"),
    ("torch", "keras"): ("torch", "tensorflow", "keras"),
}


def run(ctx: Context) -> list:
    rows = [_help(ctx)]
    pairs = [(s, t) for s in SOURCES for t in SOURCES] if ctx.preset.all_pairs else list(FORBIDDEN)
    rows += [_imports(ctx, source, target) for source, target in pairs]
    return rows


def _help(ctx: Context) -> Row:
    command = lstmconvert_command() + ["--help"]
    results = interleaved({"ours": Job(command), "bare": Job([python(), "-c", "pass"])}, ctx.preset.repeats)
    problem = next((r for r in results.values() if isinstance(r, MeasurementFailed)), None)
    if problem is not None:
        return failed(SECTION, "`lstmconvert --help` wall time", str(problem), f"≤ {HELP_LIMIT} s")
    ours, bare = median_seconds(results["ours"]), median_seconds(results["bare"])
    imported = _frameworks(run_cold([python(), script("import_probe.py"), "--help"])) or []
    measurement = "`lstmconvert --help` wall (baseline: bare `python -c pass`)"
    verdict = at_most(ours, HELP_LIMIT, "s")
    if imported:
        verdict += f"; imports {', '.join(imported)}"
    return Row(SECTION, measurement, seconds(ours), seconds(bare), ours / bare, f"≤ {HELP_LIMIT} s", verdict)


def _imports(ctx: Context, source: str, target: str) -> Row:
    dst = ctx.path(f"imports_{source}{EXTENSIONS[target]}")
    command = [python(), script("import_probe.py"), "convert", SOURCES[source], "-o", dst, "--force"]
    measurement = f"frameworks imported by convert {EXTENSIONS[source]}→{EXTENSIONS[target]}"
    forbidden = FORBIDDEN.get((source, target))
    target_text = f"none of {', '.join(forbidden)}" if forbidden else ""
    probe = run_cold(command)
    imported = _frameworks(probe)
    if imported is None:
        ctx.note(f"convert {EXTENSIONS[source]}→{EXTENSIONS[target]}: {probe.failure()}")
        return failed(SECTION, measurement, "conversion failed (see notes)", target_text)
    verdict = ""
    if forbidden:
        bad = [name for name in forbidden if name in imported]
        verdict = f"MISSED: imports {', '.join(bad)}" if bad else "met"
    return Row(SECTION, measurement, ", ".join(imported) or "none", target=target_text, verdict=verdict)


def _frameworks(run) -> list:
    """The probe's framework list, or None if the command failed."""
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if not run.ok or not lines:
        return None
    result = json.loads(lines[-1])
    return result["frameworks"] if result["exit"] == 0 else None
