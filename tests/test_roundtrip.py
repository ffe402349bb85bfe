"""``roundtrip``: a model written through each format comes back bit-exact and computes the same
in every runtime; a writer or reader that bends one weight is caught."""

from __future__ import annotations

import copy
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lstmconvert import gates  # noqa: E402
from lstmconvert.cli import main  # noqa: E402
from lstmconvert.checks import roundtrip  # noqa: E402
from needs import needs, needs_files  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TAGGER_PT = FIXTURES / "torch" / "tagger.pt"  # two biases per direction: tests Keras's folding
PROJ_PT = FIXTURES / "torch" / "tagger_proj.pt"  # proj_size: only PyTorch carries it
SMALL_PT = FIXTURES / "torch" / "classifier_last.pt"


def cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def format_module(name: str):
    return importlib.import_module(f"lstmconvert.formats.{name}_format")


@pytest.mark.parametrize(
    "src",
    [TAGGER_PT, FIXTURES / "keras" / "classifier.keras", FIXTURES / "onnx" / "tf_bi_classifier.onnx"],
    ids=["torch-tagger", "keras-masked-classifier", "onnx-tf2onnx-bidirectional"],
)
def test_fixture_of_each_format_survives_every_format(src):
    needs("torch", "keras", "onnx")
    report = roundtrip(src)
    assert report.passed, report.render_text()
    assert [h.format for h in report.hops] == ["torch", "keras", "onnx"]
    for hop in report.hops:
        assert hop.status == "pass" and hop.weights == [] and hop.verify.passed, report.render_text()
        assert hop.verify.expect == "same" and len(hop.verify.cases) >= 4
    keras_hop = report.hops[1]
    assert "biases folded b_ih+b_hh" in keras_hop.detail


def test_torch_export_program_hop():
    needs("torch")
    report = roundtrip(SMALL_PT, via="pt2")
    assert report.passed, report.render_text()
    assert report.hops[0].file.endswith(".pt2") and report.hops[0].verify.dst_format == "torch"


def test_format_that_cannot_carry_is_skipped_unless_asked_for(capsys):
    needs("torch", "keras", "onnx")
    report = roundtrip(PROJ_PT)
    status = {h.format: h.status for h in report.hops}
    assert status == {"torch": "pass", "keras": "skip", "onnx": "skip"}, report.render_text()
    assert report.passed
    for hop in report.hops[1:]:
        assert hop.detail.startswith("cannot carry:") and "proj" in hop.detail

    code, out, _ = cli(capsys, "roundtrip", PROJ_PT, "--via", "torch,keras")
    assert code == 1
    assert "keras" in out and "FAIL" in out and "cannot carry" in out


def perturbing_writer(monkeypatch, fmt: str, change):
    """Make ``fmt``'s writer write ``change(model)`` instead of the model it was given."""
    module = format_module(fmt)
    original = module.write

    def write(model, path, options):
        model = copy.deepcopy(model)
        change(model)
        return original(model, path, options)

    monkeypatch.setattr(module, "write", write)


def one_ulp_up(model):
    w = model.layers[0].directions[0].w_hh
    w[2, 1] = np.nextafter(w[2, 1], np.float32(np.inf))


def test_writer_that_bends_one_weight_by_one_ulp_is_caught(monkeypatch):
    needs("torch", "onnx")
    perturbing_writer(monkeypatch, "onnx", one_ulp_up)
    report = roundtrip(TAGGER_PT, via="onnx,torch")
    onnx_hop, torch_hop = report.hops
    assert not report.passed and torch_hop.status == "pass"
    assert onnx_hop.status == "fail"
    assert len(onnx_hop.weights) == 1, onnx_hop.weights
    assert onnx_hop.weights[0].startswith("layers.0.forward.w_hh: 1 of 1024 values differ")
    # One ulp is far inside the output tolerance: only the bit-exactness check can see it.
    assert onnx_hop.verify.passed


def test_writer_that_changes_outputs_is_caught_with_a_diagnosis(monkeypatch, capsys):
    needs("torch")
    def onnx_order_as_torch_order(model):
        d = model.layers[1].directions[0]
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            setattr(d, name, gates.permute_blocks(getattr(d, name), gates.TO_ONNX))

    perturbing_writer(monkeypatch, "torch", onnx_order_as_torch_order)
    code, out, _ = cli(capsys, "roundtrip", TAGGER_PT, "--via", "torch", "--json")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    hop = data["hops"][0]
    assert hop["status"] == "fail"
    assert {p.split(":")[0] for p in hop["weight_problems"]} == {
        "layers.1.forward.w_ih", "layers.1.forward.w_hh", "layers.1.forward.b_ih", "layers.1.forward.b_hh"}
    assert hop["verify"]["passed"] is False
    assert any("layer 1 forward" in line and "i,o,f,g" in line for line in hop["verify"]["diagnosis"])


def test_keras_hop_checks_the_documented_bias_folding(monkeypatch):
    """Keras has one bias; it must hold exactly b_ih + b_hh. A writer that keeps only b_ih is caught."""
    needs("torch", "keras")
    perturbing_writer(monkeypatch, "keras", lambda m: [setattr(d, "b_hh", None) for d in m.layers[0].directions])
    report = roundtrip(TAGGER_PT, via="keras")
    hop = report.hops[0]
    assert hop.status == "fail"
    assert any(p.startswith("layers.0.forward.b_ih: not the folded b_ih + b_hh") for p in hop.weights), hop.weights
    assert not hop.verify.passed


def test_reader_that_misreads_the_gate_order_is_caught(monkeypatch):
    """The Keras file is right and Keras runs it right; only the weights check sees the reader's bug."""
    needs("torch", "keras")
    module = format_module("keras")
    original = module.read

    def read(path, hints):
        model = original(path, hints)
        d = model.layers[0].directions[0]
        d.w_ih = gates.permute_blocks(d.w_ih, (0, 2, 1, 3))
        return model

    monkeypatch.setattr(module, "read", read)
    report = roundtrip(TAGGER_PT, via="keras")
    hop = report.hops[0]
    assert hop.status == "fail" and hop.weights and hop.weights[0].startswith("layers.0.forward.w_ih")


def test_cli_text_output_and_kept_files(tmp_path, capsys):
    needs("torch", "keras", "onnx")
    code, out, _ = cli(capsys, "roundtrip", SMALL_PT, "--via", "onnx,keras", "--keep", tmp_path, "--seed", "5")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"roundtrip {SMALL_PT}") and lines[-1] == "PASS"
    assert [line.split()[0] for line in lines[1:-1]] == ["onnx", "keras"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier_last.roundtrip.keras",
                                                          "classifier_last.roundtrip.onnx"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["roundtrip", FIXTURES / "torch" / "missing.pt"], "no such file"),
        (["roundtrip", SMALL_PT, "--via", "torch,tflite"], "unknown roundtrip format 'tflite'"),
        (["roundtrip", SMALL_PT, "--keep", FIXTURES / "nowhere"], "not a folder"),
    ],
    ids=["missing", "unknown-format", "no-keep-folder"],
)
def test_bad_input_exits_2(capsys, args, message):
    needs_files(*(a for a in args if isinstance(a, Path) and a.exists()))
    code, out, err = cli(capsys, *args)
    assert code == 2 and message in err and out == ""
