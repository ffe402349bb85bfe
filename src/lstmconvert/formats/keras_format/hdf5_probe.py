"""Read an HDF5 file's structure in a forked child before this process does.

libhdf5 trusts the bytes of a file: a damaged one (a few flipped bits in an object header) can make it
read through a wild pointer and kill the process with SIGSEGV, where no Python exception can be
caught, or loop forever, so the one-line error the CLI promises would be a crash or a hang instead. A
child process walks the file first (every attribute, and every dataset's shape and type, and its data while the file is
small); if libhdf5 kills the child, the file is refused as damaged and this process never touches it.
A Python error in the child is left for this process's own read to report precisely. Where ``fork``
does not exist (Windows), nothing is probed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

from ...errors import ReadError

SMALL = 64 << 20  # below this, the child reads the datasets' data too
PATIENCE = 30  # seconds the child may take (a damaged file can make libhdf5 loop forever)


def probe(path: Path, open_file: Callable, size: int, member: str = "") -> None:
    """Walk the HDF5 file ``open_file()`` returns (``path``, or its ``member``) in a forked child; raise
    ReadError if libhdf5 crashes. A file already walked unchanged in this process is not walked again
    (reading a file, then running it, opens it more than once)."""
    if not hasattr(os, "fork"):
        return
    stat = path.stat()
    key = (str(path.resolve()), member, stat.st_mtime_ns, stat.st_size)
    if key in _WALKED:
        return
    _walk_in_child(open_file, size)
    _WALKED.add(key)


_WALKED: set = set()  # (path, member, mtime, size) of files whose walk survived


def _walk_in_child(open_file: Callable, size: int) -> None:
    """Raise ReadError if walking the file kills a forked child."""
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers
        code = 0
        try:
            with open_file() as handle:
                _walk(handle, read_data=size < SMALL)
        except BaseException:
            code = 1
        os._exit(code)
    deadline = time.monotonic() + PATIENCE
    while True:  # libhdf5 can also loop forever on a damaged file: the child gets PATIENCE seconds
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise ReadError(f"libhdf5 did not finish reading its structure in {PATIENCE} s: the file is damaged")
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ReadError(f"libhdf5 crashed ({name}) reading its structure: the file is damaged")


def _walk(handle, read_data: bool) -> None:
    """Touch what a reader may touch; an error in one place does not stop the walk (only a crash counts)."""
    def attributes(item) -> None:
        try:
            names = list(item.attrs)
        except Exception:
            names = []
        for key in dict.fromkeys(names + list(_NAMED)):
            try:
                if key in item.attrs:
                    item.attrs[key]
            except Exception:
                pass

    def visit(_name, item) -> None:
        attributes(item)
        if hasattr(item, "shape"):
            try:
                item.shape, item.dtype
                if read_data:
                    item[()]
            except Exception:
                pass

    def walk(group, depth: int) -> None:  # by hand: one damaged link must not end the walk
        attributes(group)
        try:
            names = list(group.keys())
        except Exception:
            return
        for name in names:
            try:
                item = group[name]
            except Exception:
                continue
            if hasattr(item, "keys") and depth < 64:
                walk(item, depth + 1)
            else:
                visit(name, item)

    walk(handle, 0)


# Attributes the readers ask for by name, also when listing a damaged header's attributes fails.
_NAMED = ("model_config", "keras_version", "backend", "layer_names", "weight_names", "name", "dtype")
