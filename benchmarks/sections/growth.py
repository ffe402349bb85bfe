"""5. How cost grows: in-process conversion time against output size as the hidden size doubles.

Time per MB written should stay flat or fall as models grow (fixed costs spread out); the table
gives, for each doubling, the growth exponent log(time ratio) / log(bytes ratio): 1 is linear in
the bytes, above 1 means cost grows faster than the data.
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
        previous = None
        for point in (p for p in points if p["target"] == target):
            mb = point["bytes"] / 1e6
            row = Row(SECTION, f".pt→bi {target}, hidden {point['hidden']}: API time (baseline: bytes; ratio: growth exponent)",
                      f"{seconds(point['seconds'])} ({point['seconds'] / mb * 1000:.1f} ms/MB)", size(point["bytes"]))
            if previous is not None:
                exponent = math.log(point["seconds"] / previous["seconds"]) / math.log(point["bytes"] / previous["bytes"])
                row.ratio = exponent
                row.target = f"exponent ≤ {EXPONENT_LIMIT}"
                row.verdict = "met" if exponent <= EXPONENT_LIMIT else f"MISSED (grows as bytes^{exponent:.2f})"
            rows.append(row)
            previous = point
    return rows
