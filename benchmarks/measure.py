"""Timing and memory of cold subprocesses, and medians of repeated measurements.

Everything that involves start-up or imports runs as a fresh subprocess, so each side pays its own
imports. The peak resident memory of exactly that child comes from ``os.wait4``: unlike
``getrusage(RUSAGE_CHILDREN)``, which keeps the maximum over every child ever waited for, it belongs
to the one process measured.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"
# A folder holding another lstmconvert package to measure instead of this checkout's (run.py's
# --lstmconvert-path), e.g. a branch with a proposed change, for before/after figures.
LSTMCONVERT_PATH = ""


def use_lstmconvert_from(folder: Path) -> None:
    """Measure the lstmconvert package inside ``folder`` instead of this checkout's."""
    global LSTMCONVERT_PATH
    if (folder / "src" / "lstmconvert" / "__init__.py").is_file():  # a checkout (src layout)
        folder = folder / "src"
    if not (folder / "lstmconvert" / "__init__.py").is_file():
        raise SystemExit(f"{folder} holds no lstmconvert package")
    LSTMCONVERT_PATH = str(folder.resolve())


@dataclass
class Run:
    """One finished subprocess."""

    command: list
    seconds: float
    peak_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """The last informative line of stderr (or stdout), for a table cell."""
        lines = [line.strip() for line in (self.stderr + "\n" + self.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {self.returncode}"
        if len(last) > 240:  # keep the head (what failed) and the tail (often the decisive detail)
            last = f"{last[:120]} … {last[-120:]}"
        return f"failed (exit {self.returncode}): {last}"


class MeasurementFailed(RuntimeError):
    """A measured command exited non-zero; the message is the failure line."""


def environment() -> dict:
    """The subprocess environment: this checkout first on the path, TensorFlow's start-up chatter off.

    Bytecode caching is switched back on where the environment turned it off: installed packages
    run from cached bytecode, and recompiling every module on every start would charge lstmconvert
    (an editable checkout here) for something users do not pay.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    first = [LSTMCONVERT_PATH] if LSTMCONVERT_PATH else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, first + [str(REPO / "src"), str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_cold(command: Sequence, cwd: Optional[Path] = None) -> Run:
    """Run ``command`` once as a fresh process; wall time and that process's peak RSS."""
    command = [str(c) for c in command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=environment())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    # Linux reports ru_maxrss in KiB.
    return Run(command, seconds, usage.ru_maxrss * 1024, proc.returncode, stdout, stderr)


@dataclass
class Job:
    """A command to measure, and what to do before each run (e.g. delete the previous output)."""

    command: Sequence
    before: Optional[Callable[[], None]] = None


def interleaved(jobs: dict, times: int, warmup: bool = True) -> dict:
    """Run every job ``times``, round-robin, so a change in the machine's load hits all of them alike.

    ``warmup``: one untimed round first, so every side finds its bytecode and files cached.
    Returns name -> list of Runs; a failing job is dropped from later rounds and maps to the
    MeasurementFailed describing its failure instead.
    """
    results: dict = {name: [] for name in jobs}
    for round_ in range(times + (1 if warmup else 0)):
        for name, job in jobs.items():
            if isinstance(results[name], MeasurementFailed):
                continue
            if job.before is not None:
                job.before()
            run = run_cold(job.command)
            if not run.ok:
                results[name] = MeasurementFailed(run.failure())
            elif round_ > 0 or not warmup:
                results[name].append(run)
    return results


def median_seconds(runs: list) -> float:
    return statistics.median(r.seconds for r in runs)


def python() -> str:
    return sys.executable


def console_script(name: str) -> str:
    """The installed console script beside this interpreter (what ``pip install`` puts on PATH).

    Version-manager shims (pyenv) would add their own start-up to every run, so the script next to
    ``sys.executable`` is used; ``python -m lstmconvert`` is the fallback for an uninstalled checkout.
    """
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else ""


def lstmconvert_command() -> list:
    script = console_script("lstmconvert")
    return [script] if script else [python(), "-m", "lstmconvert"]


def script(name: str) -> str:
    """Path of a worker script in benchmarks/scripts."""
    return str(SCRIPTS / name)


def time_copy(source: Path, times: int) -> float:
    """Median seconds of ``shutil.copyfile`` of ``source`` (plus its side files) to fresh files.

    The I/O floor of writing an output of that size: every copy goes to a new file, which is deleted
    afterwards, so the page cache holds the source but never the destination. Dirty pages are
    flushed first (untimed), as before each measured conversion (``settle``), so neither pays for
    the other's write-back.
    """
    files = output_files(source)
    samples = []
    with tempfile.TemporaryDirectory(dir=source.parent, prefix=".copy.") as folder:
        for k in range(times):
            settle()
            start = time.perf_counter()
            for f in files:
                shutil.copyfile(f, Path(folder) / f"{k}.{f.name}")
            samples.append(time.perf_counter() - start)
            for f in files:
                (Path(folder) / f"{k}.{f.name}").unlink()
    return statistics.median(samples)


def settle() -> None:
    """Flush dirty pages to disk (untimed), so a timed write does not queue behind earlier ones.

    Writing gigabytes fills the page cache faster than the disk drains it; past the kernel's
    dirty-page limits every writer is throttled, so a measurement would depend on what ran before.
    """
    os.sync()


def output_files(path: Path) -> list:
    """``path`` and the side files a writer puts beside it (named after it, e.g. ONNX external data)."""
    return [path] + sorted(p for p in path.parent.glob(path.name + ".*") if p.is_file())


def output_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in output_files(path))


def remove_output(path: Path) -> None:
    for f in output_files(path):
        f.unlink(missing_ok=True)
