"""The error contract of the library boundary (``api``) and the CLI, for every format.

Formats raise path-less errors; ``api`` names the user's file and keeps the error's class, so a
caller can tell a file it cannot read (``ReadError``) from a model a format cannot carry
(``UnsupportedError``) from a target it cannot write (``WriteError``), and every message reads
``<path>: <problem>`` with the path the user gave, never a temporary staging path. The CLI prints that
message as its one stderr line and exits 2 with nothing on stdout.

Each format's cases run when the package that reads or writes it is installed and are skipped by
name otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstmconvert
from lstmconvert import LstmConvertError, ReadError, UnsupportedError, WriteError
from lstmconvert.errors import OutsideNeutralShapeError
from lstmconvert.cli import main

from factories import tagger
from needs import needs

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
GARBAGE = bytes(range(256)) * 4

# What a format needs installed to read a file, and to write one (``needs`` names the packages).
READS_WITH = {"torch": "torch", "keras": "keras-read", "onnx": "onnx"}
WRITES_WITH = {"torch": "torch", "keras": "keras", "onnx": "onnx"}
EXTENSION = {"torch": ".pt", "keras": ".keras", "onnx": ".onnx"}
FORMATS = tuple(EXTENSION)


def _gru_torch(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = folder / "gru.pt"
    torch.save({f"gru.{k}": v for k, v in torch.nn.GRU(8, 4).state_dict().items()}, path)
    return path


# A file holding a recurrent model but no LSTM, and the class each format's reader gives it: the
# PyTorch and ONNX readers find no LSTM in it (ReadError); the Keras reader refuses the GRU layer
# by name (UnsupportedError, the class of every layer Keras's reader cannot carry).
NO_LSTM = {
    "torch": (_gru_torch, ReadError, "'gru' is an nn.GRU, not an LSTM"),
    "keras": (lambda folder: FIXTURES / "keras" / "gru.keras", OutsideNeutralShapeError, r"layer 'gru' \(GRU\) is not supported"),
    "onnx": (lambda folder: FIXTURES / "onnx" / "bad" / "gru.onnx", ReadError, "the graph has no LSTM node"),
}


def _cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, args: list, path: Path, problem: str) -> None:
    """The CLI refuses with exit 2, one stderr line ``lstmconvert: error: <path>: <problem>``, no stdout."""
    code, out, err = _cli(capsys, *args)
    lines = err.splitlines()
    assert (code, out, len(lines)) == (2, "", 1), (code, out, err)
    assert lines[0] == f"lstmconvert: error: {path}: {' '.join(problem.split())}", err


def assert_names_user_path(exc: LstmConvertError, path: Path) -> None:
    assert exc.path == path
    assert str(exc) == f"{path}: {exc.problem}"
    assert f"{path}: " not in exc.problem  # named once, by the boundary


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file_is_a_read_error_naming_it(fmt, tmp_path, capsys):
    path = tmp_path / f"missing{EXTENSION[fmt]}"  # refused before any framework is imported
    with pytest.raises(ReadError) as info:
        lstmconvert.load(path)
    assert_names_user_path(info.value, path)
    assert info.value.problem == "no such file"
    assert_refused(capsys, ["inspect", path], path, "no such file")


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_bytes_are_a_read_error_naming_the_file(fmt, tmp_path, capsys):
    needs(READS_WITH[fmt])
    path = tmp_path / f"garbage{EXTENSION[fmt]}"
    path.write_bytes(GARBAGE)
    with pytest.raises(ReadError) as info:
        lstmconvert.load(path)
    assert_names_user_path(info.value, path)
    assert_refused(capsys, ["inspect", path], path, info.value.problem)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_without_an_lstm_is_refused_with_its_formats_class(fmt, tmp_path, capsys):
    needs(READS_WITH[fmt])
    make, cls, match = NO_LSTM[fmt]
    path = make(tmp_path)
    with pytest.raises(LstmConvertError, match=match) as info:
        lstmconvert.load(path)
    assert type(info.value) is cls
    assert_names_user_path(info.value, path)
    # Keras refuses the GRU layer as outside the neutral shape, so convert tries in-place widening,
    # which finds no LSTM to widen.
    problem = "the model holds no unidirectional top-level LSTM to widen" if fmt == "keras" else info.value.problem
    assert_refused(capsys, ["convert", path, "-o", tmp_path / f"out{EXTENSION[fmt]}"], path, problem)
    assert not (tmp_path / f"out{EXTENSION[fmt]}").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_existing_target_without_force_is_a_write_error(fmt, tmp_path, capsys):
    target = tmp_path / f"taken{EXTENSION[fmt]}"
    target.write_bytes(b"keep me")
    with pytest.raises(WriteError) as info:
        lstmconvert.save(tagger(), target)
    assert_names_user_path(info.value, target)
    assert info.value.problem == "exists; pass --force (force=True) to replace it"
    assert target.read_bytes() == b"keep me"
    source = FIXTURES / "onnx" / "tf_tagger.onnx"  # any readable source: the target is checked first
    needs(READS_WITH["onnx"])
    assert_refused(capsys, ["convert", source, "-o", target], target, info.value.problem)
    assert target.read_bytes() == b"keep me"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_target_in_a_missing_folder_is_a_write_error(fmt, tmp_path):
    target = tmp_path / "no" / f"model{EXTENSION[fmt]}"
    with pytest.raises(WriteError) as info:
        lstmconvert.save(tagger(), target)
    assert_names_user_path(info.value, target)
    assert info.value.problem == f"folder {target.parent} does not exist"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_staging_failure_names_the_target(fmt, tmp_path):
    needs(WRITES_WITH[fmt])
    # The name fits the file system, but the staging folder beside it (".<name>.<random>") does not.
    target = tmp_path / ("m" * (250 - len(EXTENSION[fmt])) + EXTENSION[fmt])
    with pytest.raises(WriteError) as info:
        lstmconvert.save(tagger(), target)
    assert_names_user_path(info.value, target)
    assert info.value.problem == "cannot be written (File name too long)"
    assert f".{target.name}." not in str(info.value)  # the staging folder's name never shows
    assert list(tmp_path.iterdir()) == []


# A model each writer refuses, and the refusal's text: the writer raises it path-less, from inside
# the staging folder; the caller sees the target it asked for.
def _clipped(model):
    model.layers[0].clip = 3.0
    return model


REFUSED = {
    "torch": (_clipped, "layer 0 clips its gate inputs at 3; PyTorch's LSTM has no clip"),
    "keras": (_clipped, "layer 0 clips its gate inputs at 3; Keras LSTM has no clip"),
    "onnx": (lambda model: model.astype(np.float64), "float64"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_writers_refusal_keeps_its_class_and_names_the_target(fmt, tmp_path):
    needs(WRITES_WITH[fmt])
    edit, problem = REFUSED[fmt]
    target = tmp_path / f"refused{EXTENSION[fmt]}"
    with pytest.raises(UnsupportedError) as info:
        lstmconvert.save(edit(tagger()), target)
    assert_names_user_path(info.value, target)
    assert problem in info.value.problem
    assert list(tmp_path.iterdir()) == []


def test_a_path_less_write_error_from_a_writer_names_the_users_target(tmp_path):
    needs("keras")
    target = tmp_path / "model.bin"  # the Keras writer refuses the name, from inside the staging folder
    with pytest.raises(WriteError) as info:
        lstmconvert.save(tagger(), target, format="keras")
    assert_names_user_path(info.value, target)
    assert info.value.problem == "a Keras file name must end in .keras, .h5 or .hdf5"


def test_format_errors_are_path_less_until_the_boundary_names_a_path():
    assert str(ReadError("truncated")) == "truncated" and ReadError("truncated").path is None
    assert str(ReadError("m.pt", "truncated")) == "m.pt: truncated"
    refusal = UnsupportedError("no clip")
    assert refusal.at("a.keras") is refusal and str(refusal) == "a.keras: no clip"
    assert str(refusal.at("b.keras")) == "a.keras: no clip"  # the first path named stays


def test_in_place_widening_names_the_users_files(tmp_path):
    src, other = tmp_path / "model.onnx", tmp_path / "model.keras"
    with pytest.raises(ReadError) as info:
        lstmconvert.widen_in_place(src, tmp_path / "out.onnx")
    assert_names_user_path(info.value, src)
    assert info.value.problem == "no such file"
    src.write_bytes(GARBAGE)
    with pytest.raises(UnsupportedError) as info:
        lstmconvert.widen_in_place(src, other)
    assert_names_user_path(info.value, src)
    assert info.value.problem == "in-place widening writes the source's own format (onnx), not keras"
    with pytest.raises(WriteError) as info:
        lstmconvert.widen_in_place(src, src, force=True)
    assert_names_user_path(info.value, src)
    assert not other.exists() and src.read_bytes() == GARBAGE


def test_a_staged_path_in_a_writers_error_is_mapped_back_to_the_target(tmp_path, monkeypatch):
    """Whatever a writer (or its framework) says about the file it was given, the user reads their target."""
    needs("onnx")
    from lstmconvert.formats import onnx_format

    def write_and_fail(model, staged, options):
        staged.write_bytes(b"partial")
        raise WriteError(staged, f"the framework could not finish {staged} (disk full)")

    monkeypatch.setattr(onnx_format, "write", write_and_fail)
    target = tmp_path / "model.onnx"
    with pytest.raises(WriteError) as info:
        lstmconvert.save(tagger(), target)
    assert info.value.path == target
    assert str(info.value) == f"{target}: the framework could not finish {target} (disk full)"
    assert list(tmp_path.iterdir()) == []  # the partial file stayed in the staging folder, now gone
