"""``verify``: real conversions pass, deliberately broken files fail with the right diagnosis.

Every number compared comes from the frameworks' runtimes (PyTorch, Keras, onnxruntime) through the
formats' ``run``. Broken files are made the way a buggy converter would make them: take the correct
model, apply one bug, and write it with lstmconvert's own writers.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lstmconvert  # noqa: E402
from lstmconvert import gates  # noqa: E402
from lstmconvert.cli import main  # noqa: E402
from lstmconvert.model import Activation  # noqa: E402
from lstmconvert.checks import verify  # noqa: E402
from needs import needs, needs_files  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TAGGER_PT = FIXTURES / "torch" / "tagger.pt"  # tokens, 2 forward layers, head, time-first
BI_TAGGER_ONNX = FIXTURES / "onnx" / "torch_bi_tagger_ts.onnx"  # features, bidirectional, head
REVERSE_SUM_ONNX = FIXTURES / "onnx" / "handmade_reverse_sum.onnx"  # layer 0 runs backward only
KERAS_CLASSIFIER = FIXTURES / "keras" / "classifier.keras"  # masked features, last state, head


def write_converted(src: Path, dst: Path, **options) -> Path:
    """lstmconvert's own conversion (uni->bi with ``options``, or keep-direction without)."""
    model = lstmconvert.load(src)
    if options:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lstmconvert.to_bidirectional(model, **options)
    lstmconvert.save(model, dst, force=True)
    return dst


def write_broken(src: Path, dst: Path, bug) -> Path:
    """SRC as it is, with ``bug(model)`` applied, written by lstmconvert's writer for DST's format."""
    model = copy.deepcopy(lstmconvert.load(src))
    bug(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmconvert.save(model, dst, force=True)
    return dst


def cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_diagnosed(report, *fragments: str) -> None:
    """Some finding mentions every fragment (the likely cause, in plain words)."""
    assert not report.passed
    assert any(all(f in line for f in fragments) for line in report.diagnosis), report.render_text()


# -- real conversions pass --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "src, suffix, options",
    [
        (TAGGER_PT, ".onnx", dict(backward="copy", merge="concat")),
        (KERAS_CLASSIFIER, ".pt", dict(backward="random", merge="concat")),
        (FIXTURES / "onnx" / "tf_tagger.onnx", ".keras", dict(backward="zeros", merge="sum")),
        (FIXTURES / "keras" / "bidirectional.keras", ".onnx", {}),
    ],
    ids=["torch-onnx-concat", "keras-torch-masked-last", "onnx-keras-sum", "keras-onnx-keep"],
)
def test_verify_passes_on_real_conversions(tmp_path, src, suffix, options):
    needs_files(src, suffix)
    dst = write_converted(src, tmp_path / f"converted{suffix}", **options)
    report = verify(src, dst)
    assert report.passed, report.render_text()
    assert report.expect == "same"
    assert len(report.cases) >= 4 and all(c.stats.compared > 0 for c in report.cases)
    assert report.diagnosis == []


def test_two_exporters_of_one_module_agree(tmp_path):
    """torch's TorchScript and dynamo exporters wrote the same trained tagger; the dynamo file only
    runs at the traced length, so the lengths are chosen with ``steps``."""
    needs("onnx")
    report = verify(FIXTURES / "onnx" / "torch_tagger_ts.onnx", FIXTURES / "onnx" / "torch_tagger_dynamo.onnx",
                    steps=[6], batch_sizes=[1, 3])
    assert report.passed, report.render_text()
    assert {c.label.split(" ")[0] for c in report.cases} == {"(1,", "(3,"}


def test_state_dict_and_its_onnx_export_agree():
    """The .pt the exporter started from and the exported .onnx: two readers, two runtimes."""
    needs("torch", "onnx")
    report = verify(FIXTURES / "onnx" / "torch_tagger_ts.pt", FIXTURES / "onnx" / "torch_tagger_ts.onnx")
    assert report.passed, report.render_text()


def test_widened_model_without_head_is_checked_on_its_forward_half(tmp_path):
    needs("torch", "onnx")
    import torch

    torch.manual_seed(0)
    src = tmp_path / "bare.pt"
    torch.save(torch.nn.LSTM(3, 5).state_dict(), src)
    dst = write_converted(src, tmp_path / "bare_bi.onnx", backward="copy", merge="concat")
    report = verify(src, dst)
    assert report.expect == "forward-half" and report.passed, report.render_text()
    # The backward half really is there and differs from the forward half, so the slice matters.
    with pytest.raises(lstmconvert.LstmConvertError, match="expect same needs DST's output to be 5 wide"):
        verify(src, dst, expect="same")


# -- broken files are caught and diagnosed ----------------------------------------------------------

def permute_gates(layer: int, direction: int, perm: tuple):
    def bug(model):
        d = model.layers[layer].directions[direction]
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            if getattr(d, name) is not None:
                setattr(d, name, gates.permute_blocks(getattr(d, name), perm))
    return bug


def test_correct_keep_direction_copy_passes(tmp_path):
    """The control for the broken files below: the same pipeline without the bug passes."""
    needs("torch", "onnx")
    dst = write_broken(BI_TAGGER_ONNX, tmp_path / "bi.pt", lambda model: None)
    assert verify(BI_TAGGER_ONNX, dst).passed


def test_permuted_gates_of_the_reverse_direction(tmp_path, capsys):
    needs("torch", "onnx")
    dst = write_broken(BI_TAGGER_ONNX, tmp_path / "bi.pt", permute_gates(0, 1, gates.TO_ONNX))
    report = verify(BI_TAGGER_ONNX, dst)
    assert_diagnosed(report, "layer 0 reverse", "gate blocks permuted as i,o,f,g", "ONNX order")
    assert not any("layer 0 forward" in line for line in report.diagnosis)

    code, out, _ = cli(capsys, "verify", BI_TAGGER_ONNX, dst)
    assert code == 1
    assert "FAIL: mismatch on" in out and "(1, 1, 4)" in out
    assert "likely cause:" in out and "layer 0 reverse" in out


def test_dropped_recurrent_bias(tmp_path):
    needs("torch", "onnx")
    def drop_b_hh(model):
        model.layers[1].directions[0].b_hh = None

    dst = write_broken(TAGGER_PT, tmp_path / "tagger.onnx", drop_b_hh)
    assert_diagnosed(verify(TAGGER_PT, dst), "layer 1 forward", "b_hh dropped")


def test_backward_layer_run_forwards(tmp_path):
    """A layer that should run backward in time, written as running forward."""
    needs("onnx")
    def run_forwards(model):
        model.layers[0].reverse = False

    dst = write_broken(REVERSE_SUM_ONNX, tmp_path / "reverse_sum.onnx", run_forwards)
    report = verify(REVERSE_SUM_ONNX, dst)
    assert_diagnosed(report, "layer 0 reverse: runs forward in time")
    assert any("layer 0: DST's runs forward in time, SRC's backward" in line for line in report.diagnosis)


def test_masking_lost(tmp_path):
    """Without the mask the last state is taken after the padding: real outputs change."""
    needs("keras", "onnx")
    def unmask(model):
        model.masked = False

    dst = write_broken(KERAS_CLASSIFIER, tmp_path / "classifier.onnx", unmask)
    report = verify(KERAS_CLASSIFIER, dst)
    assert_diagnosed(report, "padding steps are processed as real steps")
    # Only the padded batches can differ; unpadded ones must still pass.
    assert any(c.passed for c in report.cases) and not all(c.passed for c in report.cases)
    assert all("lengths" in label for label in report.failed_inputs)


def test_wrong_gate_activation(tmp_path):
    needs("torch", "onnx")
    def keras2_hard_sigmoid(model):
        d = model.layers[0].directions[0]
        d.activations = (Activation("hard_sigmoid", alpha=0.2, beta=0.5),) + tuple(d.activations[1:])

    dst = write_broken(TAGGER_PT, tmp_path / "tagger.onnx", keras2_hard_sigmoid)
    assert_diagnosed(verify(TAGGER_PT, dst), "layer 0 forward", "gate activation is hard_sigmoid(alpha=0.2, beta=0.5)")


def test_non_preserving_widening_is_a_mismatch(tmp_path):
    needs("torch", "onnx")
    dst = write_converted(TAGGER_PT, tmp_path / "sum_copy.onnx", backward="copy", merge="sum")
    assert_diagnosed(verify(TAGGER_PT, dst), "non-zero backward direction", "'sum'")


# -- output formats and exit codes ------------------------------------------------------------------

def test_json_output_parses(tmp_path, capsys):
    needs("torch", "onnx")
    good = write_converted(TAGGER_PT, tmp_path / "good.onnx", backward="zeros", merge="concat")
    code, out, _ = cli(capsys, "verify", TAGGER_PT, good, "--json", "--seed", "3")
    data = json.loads(out)
    assert code == 0 and data["passed"] is True and data["seed"] == 3 and data["failed_inputs"] == []
    assert data["expect"] == "same" and data["atol"] == 1e-5
    assert all(case["passed"] and case["max_abs"] <= 1e-5 for case in data["cases"])

    bad = write_broken(TAGGER_PT, tmp_path / "bad.onnx", permute_gates(1, 0, (0, 1, 3, 2)))
    code, out, _ = cli(capsys, "verify", TAGGER_PT, bad, "--json")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    assert data["failed_inputs"] == [case["input"] for case in data["cases"] if not case["passed"]] != []
    assert any("layer 1 forward" in line and "i,f,o,g" in line for line in data["diagnosis"])


def test_tolerance_options_are_applied(tmp_path, capsys):
    """A Keras file differs from PyTorch by rounding; an impossible tolerance turns that into a failure."""
    needs("torch", "keras")
    dst = write_converted(TAGGER_PT, tmp_path / "tagger.keras")
    assert cli(capsys, "verify", TAGGER_PT, dst)[0] == 0
    code, out, _ = cli(capsys, "verify", TAGGER_PT, dst, "--atol", "0", "--rtol", "0", "--no-diagnose")
    assert code == 1 and "atol 0, rtol 0" in out and "likely cause" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", FIXTURES / "torch" / "missing.pt", TAGGER_PT], "no such file"),
        (["verify", TAGGER_PT, FIXTURES / "keras" / "tagger.keras"], "vocabulary of 20"),
        (["verify", TAGGER_PT, TAGGER_PT, "--expect", "forward-half"], "expect forward-half needs"),
        (["verify", FIXTURES / "onnx" / "torch_tagger_dynamo.onnx", FIXTURES / "onnx" / "torch_tagger_ts.onnx"],
         "--batch/--steps"),
        (["verify", TAGGER_PT, TAGGER_PT, "--steps", "0"], "positive integers"),
    ],
    ids=["missing", "other-vocabulary", "impossible-expect", "src-cannot-run", "bad-steps"],
)
def test_bad_input_exits_2(capsys, args, message):
    needs_files(*(a for a in args if isinstance(a, Path) and a.exists()))
    code, out, err = cli(capsys, *args)
    assert code == 2, out + err
    assert message in err and out == ""


def test_not_a_model_exits_2(tmp_path, capsys):
    needs("torch")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    code, _, err = cli(capsys, "verify", TAGGER_PT, junk)
    assert code == 2 and str(junk) in err


# -- the reference pass used for diagnosis ----------------------------------------------------------

def test_reference_pass_reproduces_torch():
    """Diagnosis ranks suspects with a numpy pass; it must agree with PyTorch's own LSTM kernel."""
    needs("torch")
    import torch

    from lstmconvert import reference
    from lstmconvert.model import LSTMDirection, LSTMLayer, SequenceModel

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    sd = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    layers = [
        LSTMLayer([LSTMDirection(*(sd[f"{p}_l{k}{s}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                   for s in ("", "_reverse")])
        for k in range(2)
    ]
    model = SequenceModel(layers=layers, batch_first=True, masked=True).validate()
    x = np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32)
    lengths = [5, 2, 4]
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), lengths, batch_first=True,
                                                     enforce_sorted=False)
    out, (h, _) = lstm(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
    np.testing.assert_allclose(reference.forward(model, x), out.detach().numpy(), atol=1e-6)
    model.readout = "last"
    np.testing.assert_allclose(reference.forward(model, x), torch.cat([h[-2], h[-1]], 1).detach().numpy(), atol=1e-6)
