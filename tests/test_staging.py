"""Writing outputs: nothing left behind on SIGTERM or SIGKILL, side files before the main file, durable renames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lstmconvert
from lstmconvert import staging
from lstmconvert.errors import WriteError

REPO = Path(__file__).resolve().parent.parent
TAGGER_PT = REPO / "fixtures" / "torch" / "tagger.pt"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _big_source(folder: Path) -> Path:
    """A PyTorch LSTM whose widened ONNX output (~130 MB) takes a moment to write and fsync."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(1024, 1024, num_layers=2)
    path = folder / "big.pt"
    torch.save(lstm.state_dict(), path)
    return path


def _staging_folders(folder: Path) -> list:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.is_dir()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_write_leaves_nothing(tmp_path, signum):
    pytest.importorskip("onnx")
    src = _big_source(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "lstmconvert", "convert", str(src), "-o", str(out_dir / "big_bi.onnx")],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _staging_folders(out_dir):  # the staging folder appears when the write starts
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    lines = [line for line in err.splitlines() if not line.startswith("lstmconvert: warning: ")]
    assert lines == [f"lstmconvert: aborted by {signal.Signals(signum).name}"], err
    assert out == ""
    assert list(out_dir.iterdir()) == []


def test_handlers_are_restored_after_a_write(tmp_path):
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        seen = []
        staging.write_staged(tmp_path / "t.bin", False, lambda staged: (seen.append(signal.getsignal(signal.SIGTERM)),
                                                                         staged.write_bytes(b"x")))
        assert seen[0] is not mine  # installed while the staging folder existed
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, hup)


def test_library_caller_gets_terminated_and_no_output(tmp_path):
    """A signal raised from inside the writer: the library raises Terminated and removes the staging."""
    target = tmp_path / "t.pt"

    def produce(staged: Path) -> None:
        staged.write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here

    with pytest.raises(staging.Terminated) as caught:
        staging.write_staged(target, False, produce)
    assert caught.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _staging_owned_by(folder: Path, proc: subprocess.Popen) -> Path:
    """A staging folder as that process would have left it, with the owner file naming it."""
    stage = folder / ".model.onnx.ab12cd34"
    (stage / staging.OUTPUT_FOLDER).mkdir(parents=True)
    (stage / staging.OUTPUT_FOLDER / "model.onnx").write_bytes(b"x" * 1000)
    record = staging._owner_record(proc.pid)
    (stage / staging.OWNER_FILE).write_text(json.dumps(record))
    return stage


def test_staging_of_a_killed_run_is_removed_by_the_next_write_and_a_live_ones_is_kept(tmp_path):
    dead, alive = _sleeper(), _sleeper()
    try:
        stale = _staging_owned_by(tmp_path, dead)
        dead.kill()  # SIGKILL: no cleanup runs in the owner
        dead.wait()
        (tmp_path / "live").mkdir()
        live = _staging_owned_by(tmp_path / "live", alive)
        live_here = tmp_path / ".other.pt.zz99yy88"
        live_here.mkdir()
        (live_here / staging.OWNER_FILE).write_text(json.dumps(staging._owner_record(alive.pid)))
        foreign = tmp_path / ".foreign.pt.qq11ww22"
        foreign.mkdir()
        (foreign / staging.OWNER_FILE).write_text(json.dumps({**staging._owner_record(dead.pid), "host": "elsewhere"}))
        unowned = tmp_path / ".legacy.pt.aa00bb11"
        unowned.mkdir()

        lstmconvert.save(lstmconvert.load(TAGGER_PT), tmp_path / "t.pt")  # a library caller's write

        assert not stale.exists()
        assert live_here.exists() and live.exists() and foreign.exists() and unowned.exists()
        assert (tmp_path / "t.pt").is_file()
    finally:
        alive.kill()
        alive.wait()


def test_a_sigkilled_cli_run_leaves_staging_that_the_next_run_removes(tmp_path):
    pytest.importorskip("onnx")
    src = _big_source(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "lstmconvert", "convert", str(src), "-o", str(out_dir / "big_bi.onnx")],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any((p / staging.OWNER_FILE).exists() for p in _staging_folders(out_dir)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert _staging_folders(out_dir), "SIGKILL runs no cleanup: the staging folder is still there"
    lstmconvert.save(lstmconvert.load(TAGGER_PT), out_dir / "t.pt")
    assert [p.name for p in out_dir.iterdir()] == ["t.pt"]


def test_side_file_goes_in_place_before_the_main_file_and_everything_is_fsynced(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else fd))
        return real_fsync(fd)

    def produce(staged: Path) -> None:
        (staged.parent / (staged.name + ".data")).write_bytes(b"weights")
        staged.write_bytes(b"model pointing at model.onnx.data")

    monkeypatch.setattr(staging.os, "replace", replace)
    monkeypatch.setattr(staging.os, "fsync", fsync)
    targets = staging.write_staged(tmp_path / "model.onnx", False, produce)

    assert [t.name for t in targets] == ["model.onnx", "model.onnx.data"]  # as reported: the model first
    renames = [name for kind, name in events if kind == "replace" and name != staging.OWNER_FILE]
    assert renames == ["model.onnx.data", "model.onnx"]
    first_rename = next(i for i, (kind, name) in enumerate(events) if kind == "replace" and name != staging.OWNER_FILE)
    synced_before = [str(name) for kind, name in events[:first_rename] if kind == "fsync"]
    assert any(s.endswith("/out/model.onnx.data") for s in synced_before)
    assert any(s.endswith("/out/model.onnx") for s in synced_before)
    assert any(s.endswith("/out") for s in synced_before)  # the staged folder's entries
    assert events[-1] == ("fsync", str(tmp_path))  # the target folder, after the renames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_an_existing_side_file_is_not_replaced_without_force(tmp_path):
    (tmp_path / "model.onnx.data").write_bytes(b"old")

    def produce(staged: Path) -> None:
        (staged.parent / (staged.name + ".data")).write_bytes(b"new")
        staged.write_bytes(b"model")

    with pytest.raises(WriteError):
        staging.write_staged(tmp_path / "model.onnx", False, produce)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx.data"]
    assert (tmp_path / "model.onnx.data").read_bytes() == b"old"
