"""The benchmark harness still runs: a tiny, untimed pass over its cheapest sections.

Figures from ``--smoke`` mean nothing (tiny models, one repeat); this only guards the harness
against rot: it must run its sections end to end and print the table with every column.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the checkout, not an installed package

from benchmarks.report import COLUMNS  # noqa: E402
from needs import needs  # noqa: E402


def test_smoke_run_prints_the_table(tmp_path):
    needs("torch", "onnx", "keras-read")  # its sections convert .pt and .keras files to .onnx and .pt
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--only", "start,growth",
         "--workdir", str(tmp_path), "--markdown", str(tmp_path / "table.md")],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("section"))
    assert header.split() == list(COLUMNS)
    body = done.stdout.split(header, 1)[1]
    for measurement in ("`lstmconvert --help` wall", "frameworks imported by convert .pt→.onnx",
                        "frameworks imported by convert .keras→.onnx", ".pt→bi .onnx, hidden 16", ".pt→bi .pt, hidden 16"):
        assert measurement in body, done.stdout
    markdown = (tmp_path / "table.md").read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in markdown
    assert list(tmp_path.iterdir()) == [tmp_path / "table.md"], "the scratch folder was not cleaned up"
