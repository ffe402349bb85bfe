"""The command line, in-process through ``lstmconvert.cli.main``: exit codes, one-line errors, safe output."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")  # every command here reads the bundled PyTorch fixtures

from lstmconvert.cli import main
from torch_helpers import FIXTURES, Tagger, assert_close, load_user, numpy_out, tokens

TAGGER = FIXTURES / "tagger.pt"


def run_cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, path: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("lstmconvert: error: ") and str(path) in lines[0], err


class MakesMarker:
    """A pickle payload that creates a file when unpickled with plain pickle (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _truncated(tmp_path: Path) -> Path:
    data = TAGGER.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.pt"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _json(tmp_path: Path) -> Path:
    path = tmp_path / "config.pt"
    path.write_text('{"hidden_size": 16}')
    return path


def _protocol_4(tmp_path: Path) -> Path:
    path = tmp_path / "protocol4.pt"
    torch.save(torch.load(TAGGER, weights_only=True), path, pickle_protocol=4)
    return path


def _no_lstm(tmp_path: Path) -> Path:
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    return path


@pytest.mark.parametrize("make, words", [
    (lambda tmp: tmp / "missing.pt", "no such file"),
    (_truncated, "truncated"),
    (_random_bytes, "not a PyTorch checkpoint"),
    (_json, "not a PyTorch checkpoint"),
    (_protocol_4, "protocol 4"),
    (_no_lstm, "no LSTM"),
    (lambda tmp: FIXTURES / "tagger_pickled_module.pt", "whole pickled module"),
])
def test_unreadable_sources_exit_2_with_one_line(tmp_path, capsys, make, words):
    src = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli(capsys, "convert", src, "-o", out_dir / "bi.pt")
    assert code == 2
    assert_one_line_error(err, src)
    assert words in err
    assert list(out_dir.iterdir()) == []  # no output, no staging folder


@pytest.mark.parametrize("as_torch_save", [True, False])
def test_pickled_code_is_refused_and_never_executed(tmp_path, capsys, as_torch_save):
    marker = tmp_path / "marker"
    payload = {"lstm.weight_ih_l0": torch.zeros(16, 8), "evil": MakesMarker(marker)}
    pickle.loads(pickle.dumps(MakesMarker(marker)))  # the payload works when unpickled normally...
    assert marker.exists()
    marker.unlink()
    src = tmp_path / "evil.pt"
    if as_torch_save:
        torch.save(payload, src)
    else:
        src.write_bytes(pickle.dumps(payload))
    code, _, err = run_cli(capsys, "inspect", src)
    assert code == 2
    assert_one_line_error(err, src)
    assert not marker.exists()  # ...but lstmconvert never unpickled it


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "bi.pt"
    out.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "convert", TAGGER, "-o", out)
    assert code == 2
    assert_one_line_error(err, out)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bi.pt"]

    code, stdout, _ = run_cli(capsys, "convert", TAGGER, "-o", out, "--force")
    assert code == 0 and "wrote" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bi.pt"]
    user = load_user(Tagger, out, bidirectional=True)
    x = tokens(0, 6, 2)
    assert_close(numpy_out(user, x), numpy_out(load_user(Tagger, TAGGER), x))


def test_already_bidirectional_source_exits_2(tmp_path, capsys):
    src = tmp_path / "bi_source.pt"
    torch.manual_seed(0)
    torch.save(Tagger(bidirectional=True).state_dict(), src)
    code, _, err = run_cli(capsys, "convert", src, "-o", tmp_path / "out.pt")
    assert code == 2
    assert "already bidirectional" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    code, _, _ = run_cli(capsys, "convert", src, "-o", tmp_path / "out.pt", "--keep-direction")
    assert code == 0


def test_ambiguous_embedding_is_resolved_by_flag(tmp_path, capsys):
    torch.manual_seed(0)
    state = {"a.weight": torch.randn(10, 8), "b.weight": torch.randn(20, 8),
             **{f"lstm.{k}": v for k, v in torch.nn.LSTM(8, 4).state_dict().items()}}
    src = tmp_path / "two.pt"
    torch.save(state, src)
    code, _, err = run_cli(capsys, "inspect", src)
    assert code == 2 and "--embedding" in err
    assert_one_line_error(err, src)
    code, _, err = run_cli(capsys, "inspect", src, "--embedding", "a")
    assert code == 2 and "b.weight" in err  # b is left over once a is the embedding


def test_head_activations_from_the_command_line(tmp_path, capsys):
    """A state_dict with a two-layer head: refused until --head says what sits between the layers."""
    torch.manual_seed(0)
    state = {**{f"lstm.{k}": v for k, v in torch.nn.LSTM(4, 6).state_dict().items()},
             **{f"mlp.{k}": v for k, v in torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                                              torch.nn.Linear(5, 2)).state_dict().items()}}
    src = tmp_path / "mlp.pt"
    torch.save(state, src)
    code, _, err = run_cli(capsys, "inspect", src)
    assert code == 2 and "--head mlp.0:relu,mlp.2" in err
    assert_one_line_error(err, src)
    code, stdout, _ = run_cli(capsys, "inspect", src, "--head", "mlp.0:relu,mlp.2")
    assert code == 0
    assert "dense 6 -> 5, relu" in stdout and "dense 5 -> 2, linear" in stdout


def test_inspect_fixture_with_hints(capsys):
    code, stdout, _ = run_cli(capsys, "inspect", FIXTURES / "classifier_last.pt", "--batch-first", "--readout", "last")
    assert code == 0
    assert "batch-first" in stdout and "readout   last" in stdout


@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"]])
def test_help_imports_no_framework(argv):
    code = (
        "import sys\n"
        "from lstmconvert.cli import main\n"
        f"rc = main({argv!r})\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'tf_keras', 'onnx', 'onnxruntime', 'h5py')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in heavy), rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED [] 0"
