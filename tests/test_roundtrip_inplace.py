"""``roundtrip`` of files outside the neutral shape: the one hop their own format can take is an in-place
widening, checked as ``verify`` checks such files (whole graphs in onnxruntime, a structural proof for a
PyTorch state_dict); the other formats are skipped, or fail when named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from needs import needs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_onnx_graph_outside_the_neutral_shape_round_trips_in_its_own_format():
    needs("onnx")
    from lstmconvert.checks import roundtrip

    report = roundtrip(FIXTURES / "onnx" / "inplace" / "crnn.onnx")
    statuses = {hop.format: hop.status for hop in report.hops}
    assert statuses == {"torch": "skip", "keras": "skip", "onnx": "pass"} and report.passed
    assert "outputs match in onnx" in report.hops[-1].detail


def test_a_named_format_that_cannot_hold_it_fails():
    needs("onnx")
    from lstmconvert.checks import roundtrip

    report = roundtrip(FIXTURES / "onnx" / "inplace" / "crnn.onnx", via="torch,onnx")
    assert not report.passed and report.hops[0].status == "fail" and "Conv node" in report.hops[0].detail


def test_a_wrong_widening_fails_the_hop(monkeypatch):
    """Non-zero backward columns in the consumer change the outputs: onnxruntime must see it."""
    needs("onnx")
    import lstmconvert.formats.onnx_format.consumer_walk as walk
    from lstmconvert.checks import roundtrip

    real = walk.widen_consumer

    def leaky(weight, **kwargs):
        widened = real(weight, **kwargs)
        return np.where(widened == 0, np.asarray(0.5, widened.dtype), widened)

    monkeypatch.setattr(walk, "widen_consumer", leaky)
    report = roundtrip(FIXTURES / "onnx" / "inplace" / "crnn.onnx", via="onnx")
    assert not report.passed and report.hops[0].status == "fail"


def test_state_dict_outside_the_neutral_shape_gets_a_structural_proof():
    needs("torch")
    from lstmconvert.checks import roundtrip

    report = roundtrip(FIXTURES / "torch_inplace" / "crnn.pt", via="torch")
    assert report.passed and "structural proof: holds" in report.hops[0].detail
