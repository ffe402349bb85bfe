"""5. How cost grows: in-process conversion time against output size as the hidden size doubles.

Time per MB written should stay flat or fall as models grow (fixed costs spread out). Per target,
the table gives the growth exponent k of time ∝ bytes^k, fitted over all sizes at once (least
squares in log-log, steadier than size-to-size ratios): 1 is linear in the bytes, above 1 means
cost grows faster than the data.
"""

from __future__ import annotations

import json
import math

from ..context import Context
from ..measure import python, run_cold, script
from ..report import Row, failed, seconds, size

SECTION = "5 growth"
EXPONENT_LIMIT = 1.1  # a little slack over linear for timing noise


def run(ctx: Context) -> list:
    preset = ctx.preset
    fixed = preset.growth
    command = [python(), script("growth_worker.py"), ctx.workdir, "--hidden", *map(str, preset.growth_hidden),
               f"--vocab={fixed.vocab}", f"--embed={fixed.embed}", f"--layers={fixed.layers}", f"--tags={fixed.tags}",
               f"--repeats={preset.growth_repeats}"]
    worker = run_cold(command)
    if not worker.ok:
        return [failed(SECTION, "load + to_bidirectional + save", worker.failure(), f"exponent ≤ {EXPONENT_LIMIT}")]
    points = [json.loads(line) for line in worker.stdout.splitlines() if line.startswith("{")]
    ctx.note(f"growth: emb {fixed.vocab}×{fixed.embed}, {fixed.layers}×LSTM(hidden), head {fixed.tags}; "
             f"in-process API, median of {preset.growth_repeats}")
    rows = []
    for target in sorted({p["target"] for p in points}):
        series = [p for p in points if p["target"] == target]
        for point in series:
            mb = point["bytes"] / 1e6
            rows.append(Row(SECTION, f".pt→bi {target}, hidden {point['hidden']}: API time (baseline: bytes written)",
                            f"{seconds(point['seconds'])} ({point['seconds'] / mb * 1000:.1f} ms/MB)",
                            size(point["bytes"])))
        if len(series) > 1:
            exponent = _slope([math.log(p["bytes"]) for p in series], [math.log(p["seconds"]) for p in series])
            hidden = f"{series[0]['hidden']}→{series[-1]['hidden']}"
            rows.append(Row(SECTION, f".pt→bi {target}, hidden {hidden}: growth exponent (ratio column)", "", "",
                            exponent, f"≤ {EXPONENT_LIMIT}",
                            "met" if exponent <= EXPONENT_LIMIT else f"MISSED (time grows as bytes^{exponent:.2f})"))
    return rows


def _slope(xs: list, ys: list) -> float:
    """Least-squares slope of ys against xs: the exponent k in time ∝ bytes^k, over all sizes at once."""
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
