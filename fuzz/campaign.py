"""A fuzzing campaign: make seeded mutants of the committed fixtures, convert each, check the promises.

Mutant ``i`` of seed ``s`` is made from ``random.Random(f"{s}:{i}")`` alone, so any mutant can be made
again from its (seed, index). Each one is converted by ``lstmconvert convert`` run in-process in a worker
process (``fuzz.worker``): the worker imports the frameworks once, and a crash or hang of a framework's
native code ends only the worker, which is recorded as a defect and restarted.

The promises checked for every mutant:
* exit 0 and an output that ``lstmconvert.load`` reads back, or exit 2 with exactly one
  ``lstmconvert: error:`` line on stderr (warnings before it are allowed) and nothing on stdout;
* no traceback, no exception out of ``main``, no crash or hang;
* on exit 2, nothing in the output folder (no output, no staging folder);
* the input files unchanged;
* no code from the file run: hostile payloads would create a canary file, which must not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import mutate, structured

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
MODEL_SUFFIXES = {".pt", ".pth", ".pt2", ".keras", ".h5", ".onnx"}
TARGETS = [".onnx"] * 9 + [".pt"] * 8 + [".keras"] * 3
RESULT_PREFIX = "\x00fuzz-result "
MUTANT_TIMEOUT = 180.0  # seconds; the first Keras write in a worker imports TensorFlow


@dataclass
class Mutant:
    index: int
    fixture: Path
    description: str
    args: list
    folder: Path
    canary: Path
    output: Path


@dataclass
class Outcome:
    mutant: Mutant
    code: object
    defects: list = field(default_factory=list)


def model_fixtures(root: Path = FIXTURES) -> list:
    return sorted(p for p in root.rglob("*") if p.suffix in MODEL_SUFFIXES and p.is_file() and not p.is_symlink())


def make_mutant(seed: int, index: int, fixtures: list, folder: Path, targets: list = TARGETS) -> Mutant:
    """Write mutant ``index`` of ``seed`` (and the fixture's side files) into ``folder/in``."""
    rng = random.Random(f"{seed}:{index}")
    families = sorted({_family(p) for p in fixtures})  # each framework as often, however many files it has
    family = rng.choice(families)
    fixture = rng.choice([p for p in fixtures if _family(p) == family])
    source, out = folder / "in", folder / "out"
    source.mkdir(parents=True)
    out.mkdir()
    canary = folder / "CANARY"
    for side in fixture.parent.glob(fixture.name + ".*"):  # external data, e.g. model.onnx.data
        if side.is_file() and not side.is_symlink():
            shutil.copyfile(side, source / side.name)
    data = fixture.read_bytes()
    descriptions = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        data, what = _mutate(rng, fixture.suffix, data, canary)
        descriptions.append(what)
    path = source / fixture.name
    path.write_bytes(data)
    output = out / ("converted" + rng.choice(targets))
    args = ["convert", str(path), "-o", str(output)] + (["--keep-direction"] if rng.random() < 0.5 else [])
    return Mutant(index, fixture.relative_to(REPO), "; ".join(descriptions), args, folder, canary, output)


def _family(path: Path) -> str:
    return {".pth": ".pt", ".pt2": ".pt"}.get(path.suffix, path.suffix)


def _mutate(rng: random.Random, suffix: str, data: bytes, canary: Path):
    try:
        return _mutate_as(rng, suffix, data, canary)
    except Exception:  # a structure-aware edit of a file an earlier mutation already broke
        return mutate.mutate_bytes(rng, data)


def _mutate_as(rng: random.Random, suffix: str, data: bytes, canary: Path):
    roll = rng.random()
    if suffix == ".onnx":
        return structured.mutate_onnx(rng, data) if roll < 0.65 else mutate.mutate_bytes(rng, data)
    if suffix == ".h5":
        if roll < 0.15:
            return structured.hostile_keras(rng, data, canary, suffix)
        return structured.mutate_hdf5(rng, data) if roll < 0.65 else mutate.mutate_bytes(rng, data)
    if suffix == ".keras":
        if roll < 0.15:
            return structured.hostile_keras(rng, data, canary, suffix)
        if roll < 0.8:
            return mutate.mutate_zip(rng, data, structured.mutate_keras_member)
        return mutate.mutate_bytes(rng, data)
    if roll < 0.15:
        return structured.hostile_torch(rng, data, canary)
    return mutate.mutate_zip(rng, data) if roll < 0.75 else mutate.mutate_bytes(rng, data)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def check(mutant: Mutant, result: dict, inputs_before: dict) -> list:
    """The promises a mutant's run broke (empty when it kept them all)."""
    defects = []
    code, err, out = result.get("code"), result.get("stderr", ""), result.get("stdout", "")
    if result.get("crash"):
        return [result["crash"]]
    if result.get("exception"):
        defects.append("exception out of main: " + result["exception"].strip().splitlines()[-1])
    if "Traceback" in err:
        defects.append("traceback on stderr")
    left = sorted(p.name for p in mutant.output.parent.iterdir())
    if code == 0:
        if result.get("load_error"):
            defects.append("exit 0 but the output does not load: " + result["load_error"])
        if any(name.startswith(".") for name in left):
            defects.append(f"staging left beside the output: {left}")
    elif code == 2:
        errors = [line for line in err.splitlines() if line.strip() and not line.startswith("lstmconvert: warning: ")]
        if len(errors) != 1 or not errors[0].startswith("lstmconvert: error: "):
            defects.append(f"exit 2 with {len(errors)} error lines: {errors[:3]}")
        if out.strip():
            defects.append(f"exit 2 with stdout: {out.strip()[:200]}")
        if left:
            defects.append(f"exit 2 left files: {left}")
    elif not result.get("exception"):
        defects.append(f"exit {code}")
    if _digest(mutant.folder / "in") != inputs_before:
        defects.append("input files changed")
    if mutant.canary.exists():
        defects.append("code from the file ran (canary created)")
    return defects


class Worker:
    """A ``python -m fuzz.worker`` process that runs mutants in-process; restarted after a crash or hang."""

    def __init__(self, log: Path):
        self.log = log
        self.proc = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")])),
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fuzz.worker"], cwd=REPO, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.buffer = b""

    def run(self, mutant: Mutant) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        request = {"args": mutant.args, "output": str(mutant.output)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._lost("worker died before the mutant ran")
        deadline = time.monotonic() + MUTANT_TIMEOUT
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    text = line.decode("utf-8", "replace")
                    if text.startswith(RESULT_PREFIX):
                        return json.loads(text[len(RESULT_PREFIX):])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._lost(f"hang: no result after {MUTANT_TIMEOUT:.0f} s")
                if selector.select(timeout=remaining):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        self.proc.wait()
                        return self._lost(f"crash: the process died with status {self.proc.returncode}")
                    self.buffer += chunk
        finally:
            selector.close()

    def _lost(self, why: str) -> dict:
        self.stop()
        return {"crash": why}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def run(count: int, seed: int, time_limit: float = float("inf"), keep: Path = None, progress=None,
        targets: list = TARGETS) -> dict:
    """Run up to ``count`` mutants (stopping at ``time_limit`` seconds); returns counts and the defects.

    ``targets``: output suffixes to draw from (a short run may leave out ".keras", whose writer imports
    TensorFlow, ~10 s on a busy 2-core machine).
    """
    fixtures = model_fixtures()
    started = time.monotonic()
    summary = {"seed": seed, "count": 0, "exit 0": 0, "exit 2": 0, "defects": []}
    with tempfile.TemporaryDirectory(prefix="lstmconvert-fuzz-") as scratch:
        worker = Worker(Path(scratch) / "worker.log")
        try:
            for index in range(count):
                if time.monotonic() - started > time_limit:
                    break
                folder = Path(scratch) / f"m{index}"
                mutant = make_mutant(seed, index, fixtures, folder, targets)
                before = _digest(folder / "in")
                result = worker.run(mutant)
                defects = check(mutant, result, before)
                summary["count"] += 1
                if result.get("code") in (0, 2):
                    summary[f"exit {result['code']}"] += 1
                if defects:
                    summary["defects"].append({"index": index, "fixture": str(mutant.fixture), "mutation": mutant.description,
                                               "args": mutant.args[3:], "defects": defects})
                    if keep is not None:
                        shutil.copytree(folder, Path(keep) / f"seed{seed}-m{index}", dirs_exist_ok=True)
                shutil.rmtree(folder, ignore_errors=True)
                if progress is not None:
                    progress(summary, mutant, defects)
        finally:
            worker.stop()
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary
