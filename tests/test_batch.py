"""Many files at once: ``lstmconvert convert A B ... -o OUTDIR/ --to FMT [-j N] [--json]`` and ``convert_many``.

A folder of mixed fixtures with one broken file: every other file is written (and computes what its
source computes, run in the real runtimes by ``verify``), the broken one is named, the exit status is 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lstmconvert
from lstmconvert.cli import main

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
MIXED = [REPO / "fixtures" / "torch" / "tagger.pt", REPO / "fixtures" / "keras" / "classifier.h5",
         REPO / "fixtures" / "onnx" / "tf_tagger.onnx"]


@pytest.fixture
def zoo(tmp_path) -> Path:
    """A folder of models in three formats, and one file that only pretends to be a checkpoint."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    for path in MIXED:
        shutil.copy(path, folder / path.name)
    (folder / "broken.pt").write_bytes(b"not a checkpoint at all")
    return folder


def run_cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mixed_folder_with_a_broken_file_converts_the_rest(zoo, tmp_path):
    out = tmp_path / "onnx_models"
    sources = sorted(zoo.iterdir())
    done = subprocess.run([sys.executable, "-m", "lstmconvert", "convert", *map(str, sources), "-o", f"{out}/",
                           "--to", "onnx", "-j", "2"], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lstmconvert: error: ")]
    assert len(errors) == 1 and str(zoo / "broken.pt") in errors[0], done.stderr
    assert all(line.startswith("lstmconvert: ") for line in done.stderr.splitlines()), done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["classifier.onnx", "tagger.onnx", "tf_tagger.onnx"]
    assert done.stdout.count("\nok  ") + done.stdout.startswith("ok  ") == 3, done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("converted 3 of 4 files")
    # the written files compute what their sources compute, each run in its own runtime
    for source in ("tagger.pt", "tf_tagger.onnx"):
        report = lstmconvert.verify(zoo / source, out / f"{Path(source).stem}.onnx")
        assert report.passed, report.render_text()


def test_json_report_lists_every_file(zoo, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "convert", zoo / "tagger.pt", zoo / "broken.pt", "-o", out, "--to", "torch",
                                   "--json")
    assert code == 1
    report = json.loads(stdout)
    assert (report["converted"], report["failed"]) == (1, 1)
    good, bad = report["files"]  # in the order given
    assert good["ok"] and good["written"] == [{"path": str(out / "tagger.pt"), "bytes": (out / "tagger.pt").stat().st_size}]
    assert good["preservation"]["status"] == "exact" and good["format"] == "torch"
    assert not bad["ok"] and bad["written"] == [] and str(zoo / "broken.pt") in bad["error"]
    assert stderr.splitlines() == [f"lstmconvert: error: {bad['error']}"]


def test_all_converted_exits_0(zoo, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "convert", zoo / "tagger.pt", zoo / "tf_tagger.onnx", "-o", tmp_path / "out",
                              "--to", "torch", "--keep-direction")
    assert code == 0, stdout
    assert stdout.rstrip().endswith("converted 2 of 2 files into " + str(tmp_path / "out"))
    back = lstmconvert.load(tmp_path / "out" / "tf_tagger.pt")
    assert not back.layers[0].bidirectional  # --keep-direction applied to every file


def test_convert_many_from_python(zoo, tmp_path):
    sources = [zoo / "broken.pt", zoo / "tagger.pt"]
    seen = []
    results = lstmconvert.convert_many(sources, tmp_path / "out", to="onnx", merge="sum", backward="zeros",
                                       on_result=seen.append)
    assert [r.source for r in results] == [str(s) for s in sources] and len(seen) == 2
    assert not results[0].ok and "broken.pt" in results[0].error
    assert results[1].ok and results[1].merge == "sum" and results[1].preservation["status"] == "exact"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tagger.onnx"]


def test_two_sources_with_one_output_name_are_refused_before_anything_is_written(zoo, tmp_path):
    (zoo / "other").mkdir()
    shutil.copy(zoo / "tagger.pt", zoo / "other" / "tagger.pt")
    out = tmp_path / "out"
    with pytest.raises(lstmconvert.LstmConvertError, match="would both be written"):
        lstmconvert.convert_many([zoo / "tagger.pt", zoo / "other" / "tagger.pt"], out, to="onnx")
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["-o", "OUT/"], ["--to"]),  # a folder needs the format of its files
    (["-o", "OUT", "--to", "onnx", "--lstm", "x"], ["--lstm", "does not apply"]),
])
def test_bad_usage_exits_2_and_writes_nothing(zoo, tmp_path, args, words):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    done = subprocess.run([sys.executable, "-m", "lstmconvert", "convert", str(zoo / "tagger.pt"),
                           str(zoo / "tf_tagger.onnx"), *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmconvert: error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "out").exists()
