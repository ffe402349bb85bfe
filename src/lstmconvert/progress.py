"""A progress bar on stderr for long commands (tqdm), and the hooks the library reports to.

A command (``convert``, ``verify``, ``roundtrip``) opens one ``session``; the library marks its
steps with ``phase("reading", nbytes)`` / ``phase("writing", nbytes)`` and, where it writes piece
by piece, ``advance(nbytes)``. Outside a session (library use, tests) these do nothing.

The bar appears only when it helps: stderr is a terminal, ``--quiet`` was not given, and the
command has run for ``DELAY`` seconds (tqdm's ``delay``); it is erased when the command ends
(``leave=False``), so what the command prints stays as it was. Piped or redirected stderr never
gets a bar. A small thread redraws it while one step blocks for long (a framework saving a file),
so the elapsed time keeps moving.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
from typing import Optional

DELAY = 1.0  # seconds before the bar appears
REDRAW = 0.5  # seconds between redraws while a step blocks

_bar = None  # the running session's tqdm bar, or None


def wanted(quiet: bool, stream=None) -> bool:
    """Whether a command should show a bar: not ``--quiet``, and ``stream`` (stderr) is a terminal."""
    if quiet:
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or unusual stream
        return False


@contextlib.contextmanager
def session(show: bool, description: str = "working"):
    """The bar of one command; ``show`` is ``wanted(...)``. Nested sessions reuse the outer bar."""
    global _bar
    if not show or _bar is not None:
        yield
        return
    from tqdm import tqdm

    size = shutil.get_terminal_size()  # 80x24 where the terminal reports no size (tqdm would draw nothing)
    bar = tqdm(total=0, desc=description, unit="B", unit_scale=True, unit_divisor=1024, delay=DELAY, leave=False,
               file=sys.stderr, ncols=min(100, size.columns), nrows=size.lines, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
               "{n_fmt}/{total_fmt} [{elapsed}]")
    stop = threading.Event()
    redraw = threading.Thread(target=_redraw, args=(bar, stop), daemon=True)
    _bar = bar
    redraw.start()
    try:
        yield
    finally:
        stop.set()
        redraw.join()
        _bar = None
        bar.close()


def _redraw(bar, stop: threading.Event) -> None:
    while not stop.wait(REDRAW):
        if bar.format_dict["elapsed"] >= DELAY and not getattr(bar, "paused", False):
            bar.refresh()


def clear() -> None:
    """Erase the bar before printing a line to the terminal; it comes back with the next phase."""
    bar = _bar
    if bar is not None:
        bar.paused = True
        bar.clear()


@contextlib.contextmanager
def phase(name: str, nbytes: Optional[int] = None):
    """A step of ``nbytes`` bytes named ``name`` ("reading", "writing"...); counted done when it ends."""
    bar = _bar
    if bar is None:
        yield
        return
    bar.paused = False
    bar.set_description_str(name, refresh=False)
    start, size = bar.n, int(nbytes or 0)
    bar.total += size
    try:
        yield
    finally:
        if bar is _bar:
            bar.update(max(0, start + size - bar.n))  # whatever advance() did not report


def advance(nbytes: int) -> None:
    """``nbytes`` more of the current phase are done (a writer streaming its output)."""
    bar = _bar
    if bar is not None:
        bar.update(max(0, min(int(nbytes), bar.total - bar.n)))
