"""The progress bar: on a terminal for commands longer than ~1 s, never when piped, never with --quiet."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

import lstmconvert
from lstmconvert import progress

TAGGER = Path(__file__).resolve().parent.parent / "fixtures" / "torch" / "tagger.pt"
BAR = b"%|"  # what every drawn bar holds: "<phase>:  42%|####      | 1.2M/3.0M [00:02]"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_decision():
    assert progress.wanted(quiet=False, stream=FakeTerminal())
    assert not progress.wanted(quiet=True, stream=FakeTerminal())
    assert not progress.wanted(quiet=False, stream=io.StringIO())  # a pipe or a file


def test_library_calls_outside_a_command_draw_nothing(capsys):
    with progress.phase("reading", 10):
        progress.advance(5)
    assert capsys.readouterr() == ("", "")


def _in_a_terminal(args: list) -> tuple:
    """Run the CLI with stdout and stderr on a pseudo-terminal; (exit code, everything it showed)."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "lstmconvert", *args], stdin=slave, stdout=slave,
                               stderr=slave, close_fds=True)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(), shown


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    target = tmp_path_factory.mktemp("progress") / "tagger_bi.onnx"
    lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(TAGGER)), target)
    return [str(TAGGER), str(target)]


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_terminal_shows_a_bar_and_quiet_silences_it(pair):
    """verify runs two frameworks (importing torch alone takes over a second), so the bar appears."""
    code, shown = _in_a_terminal(["verify", *pair])
    assert code == 0 and b"PASS" in shown.upper()
    assert BAR in shown
    code, shown = _in_a_terminal(["verify", "--quiet", *pair])
    assert code == 0 and BAR not in shown and b"\r\r" not in shown


def test_piped_output_has_no_bar(pair):
    done = subprocess.run([sys.executable, "-m", "lstmconvert", "verify", *pair], capture_output=True)
    assert done.returncode == 0
    assert BAR.decode() not in done.stderr.decode() and "\r" not in done.stderr.decode()
