"""Do two ONNX files compute the same thing? Run both in onnxruntime on the same token ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .measure import python, run_cold, script

TOLERANCE = 1e-5  # fp32 outputs of the same weights through different graphs


def largest_difference(reference: Path, other: Path, vocab: int, steps: int,
                       batch_major: bool = False) -> tuple:
    """(largest |other - reference| over batches 1 and 4, None) or (None, why it could not be run)."""
    command = [python(), script("ort_latency.py"), reference, other, f"--vocab={vocab}", f"--steps={steps}",
               "--batches", "1", "4", "--runs=0"] + (["--batch-major"] if batch_major else [])
    check = run_cold(command)
    if not check.ok:
        return None, check.failure()
    diffs = json.loads(check.stdout.strip().splitlines()[-1])["max_abs_diff"][str(other)]
    if any(d is None for d in diffs.values()):
        return None, "output shapes differ"
    return max(diffs.values()), None


def agreement_note(what: str, reference: Path, other: Path, vocab: int, steps: int,
                   batch_major: bool = False) -> str:
    """One line for the notes: same function as ours, or how far apart, or why it could not be told."""
    worst, problem = largest_difference(reference, other, vocab, steps, batch_major)
    if problem is not None:
        return f"{what}: could not compare with ours in onnxruntime: {problem}"
    if worst <= TOLERANCE:
        return f"{what}: computes what ours computes (largest output difference {worst:.1e})"
    return f"{what}: outputs DIFFER from ours by up to {worst:.1e}"


def runs_at(path: Path, vocab: int, steps: int) -> Optional[str]:
    """None if ``path`` runs on (steps, 2) ids, else onnxruntime's complaint."""
    command = [python(), script("ort_latency.py"), path, f"--vocab={vocab}", f"--steps={steps}",
               "--batches", "2", "--runs=0"]
    check = run_cold(command)
    return None if check.ok else check.failure()
