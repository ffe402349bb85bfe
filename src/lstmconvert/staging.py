"""Atomic, durable, signal-safe writing of output files.

A writer never writes to the final path. It writes into a hidden staging folder beside the target
(``.<name>.<random>``), and only when the whole model is written are its files moved into place:

* **Signals**: while a staging folder exists, SIGTERM and SIGHUP (what ``timeout``, ``kill``, CI
  cancellation and a closed terminal send) raise ``Terminated`` in the main thread, like Ctrl-C raises
  ``KeyboardInterrupt``, so the staging folder is removed on the way out. The previous handlers are
  restored afterwards; handlers are only installed from the main thread (Python delivers signals there).
* **Durability**: each staged file is fsynced, then the staging folder; the files are renamed into place
  side files first and the main file last (an ONNX model's ``.data`` before the ``.onnx`` that points at
  it, so no reader sees a model whose data is missing or from an older run), then the target folder is
  fsynced. Signals that arrive during the renames are held until the renames are done.
* **Stale staging**: each staging folder holds an ``owner`` file (pid, host, boot id, process start
  time). Every write first removes the staging folders in its target folder whose owner is gone (same host
  and boot, and the pid is dead or now belongs to a later process): what a SIGKILL or power cut left.
  A folder whose owner is alive, on another host, or unknown is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from .errors import Terminated, WriteError  # Terminated: defined with the other errors, raised here

HANDLED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
OWNER_FILE = "owner"
OUTPUT_FOLDER = "out"
OWNER_MAGIC = "lstmconvert staging"
# tempfile.mkdtemp's names: the prefix ".<target name>." and eight random characters.
_STAGING_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}$")


def write_staged(path: Path, force: bool, produce: Callable[[Path], None]) -> list:
    """Run ``produce(staged_path)`` in a staging folder beside ``path``, then move its files into place.

    Returns the final paths, the main file first (it is renamed into place last). Raises ``WriteError`` when a target exists without
    ``force``, and ``Terminated`` on SIGTERM/SIGHUP; in every failure the staging folder is removed.
    """
    check_target(path, force)
    remove_stale_staging(path.parent)
    staging = None
    with _signals_raise() as hold:
        try:
            with hold():  # a signal here must not leave a folder that the cleanup below never sees
                staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
            _write_owner(staging)
            out = staging / OUTPUT_FOLDER
            out.mkdir()
            produce(out / path.name)
            produced = sorted(out.iterdir(), key=lambda p: (p.name == path.name, p.name))  # main file last
            targets = [path.parent / p.name for p in produced]
            clashes = [t for t in targets if t.exists() and t != path]
            if clashes and not force:
                raise WriteError(clashes[0], "exists; pass --force (force=True) to replace it")
            for staged in produced:
                fsync_file(staged)
            fsync_dir(out)
            with hold():
                for staged, target in zip(produced, targets):
                    os.replace(staged, target)
                fsync_dir(path.parent)
            return sorted(targets, key=lambda t: t != path)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)


def check_target(path: Path, force: bool) -> None:
    if path.is_dir():
        raise WriteError(path, "is a folder; name the output file (or convert several files with --to into a folder)")
    if path.exists() and not force:
        raise WriteError(path, "exists; pass --force (force=True) to replace it")
    if not path.parent.is_dir():
        raise WriteError(path, f"folder {path.parent} does not exist")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (created and renamed files) durable; a no-op where folders cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- signals -------------------------------------------------------------------------------------


@contextmanager
def _signals_raise():
    """While live, SIGTERM/SIGHUP raise ``Terminated``; yields ``hold``, a context that defers them."""
    state = {"holding": False, "pending": None}

    def handler(signum, frame):
        if state["holding"]:
            state["pending"] = signum
            return
        raise Terminated(signum)

    @contextmanager
    def hold():
        state["holding"] = True
        try:
            yield
        finally:
            state["holding"] = False
        if state["pending"] is not None:
            raise Terminated(state["pending"])

    if threading.current_thread() is not threading.main_thread():
        yield hold
        return
    previous = {}
    try:
        for signum in HANDLED_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        yield hold
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


# --- owners and stale staging --------------------------------------------------------------------


def _owner_record(pid: int) -> dict:
    return {"magic": OWNER_MAGIC, "pid": pid, "host": socket.gethostname(), "boot": _boot_id(),
            "start": _process_start(pid)}


def _write_owner(staging: Path) -> None:
    """Write the owner file under a temporary name and rename it, so a reader sees all of it or none."""
    partial = staging / (OWNER_FILE + ".partial")
    partial.write_text(json.dumps(_owner_record(os.getpid())))
    os.replace(partial, staging / OWNER_FILE)


def remove_stale_staging(folder: Path) -> list:
    """Remove the staging folders in ``folder`` whose owner process is gone; returns those removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _STAGING_NAME.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        owner = _read_owner(Path(entry.path) / OWNER_FILE)
        if owner is not None and _owner_gone(owner):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _read_owner(path: Path) -> Optional[dict]:
    try:
        if path.is_symlink() or path.stat().st_size > 4096:
            return None
        owner = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(owner, dict) or owner.get("magic") != OWNER_MAGIC or not isinstance(owner.get("pid"), int):
        return None
    return owner


def _owner_gone(owner: dict) -> bool:
    """True only when the owner is certainly not running: same host, and a reboot or a dead/reused pid."""
    if owner.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if owner.get("boot") and boot and owner["boot"] != boot:
        return True
    pid = owner["pid"]
    if pid <= 0:
        return False
    if pid == os.getpid():
        return owner.get("start") is not None and owner.get("start") != _process_start(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    start = _process_start(pid)
    return owner.get("start") is not None and start is not None and start != owner["start"]


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so count from its end.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
