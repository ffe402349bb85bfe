"""``verify`` names rearranged weights: any gate permutation, transposed matrices, swapped biases, a wrong layer.

DST files are written by lstmconvert's own writers from a model with one bug applied; the verdict comes
from running SRC and DST in their runtimes (PyTorch, onnxruntime), the diagnosis from the weights,
confirmed by replaying the named change.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest

import lstmconvert
from lstmconvert import gates
from lstmconvert.checks import verify
from lstmconvert.checks.blocks import permutation_text
from lstmconvert.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TAGGER_PT = FIXTURES / "torch" / "tagger.pt"  # tokens, 2 forward layers (E 8, H 16), head


def write(model, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmconvert.save(model, path, force=True)
    return path


def broken(src_model, dst: Path, bug) -> Path:
    model = copy.deepcopy(src_model)
    bug(model)
    return write(model, dst)


def permute(k: int, d: int, perm: tuple, names=("w_ih", "w_hh", "b_ih", "b_hh")):
    def bug(model):
        direction = model.layers[k].directions[d]
        for name in names:
            if getattr(direction, name) is not None:
                setattr(direction, name, gates.permute_blocks(getattr(direction, name), perm))
    return bug


def diagnosed(report, *parts) -> str:
    assert not report.passed
    lines = [line for line in report.diagnosis if all(p in line for p in parts)]
    assert lines, report.diagnosis
    return lines[0]


def test_permutation_names():
    assert permutation_text((0, 3, 2, 1)) == "f and o blocks swapped"
    assert permutation_text((0, 3, 1, 2)) == "gates in order i, o, f, g"


def test_forward_f_and_o_swapped_in_an_onnx_file(tmp_path, capsys):
    dst = broken(lstmconvert.load(TAGGER_PT), tmp_path / "fo.onnx", permute(0, 0, (0, 3, 2, 1)))
    line = diagnosed(verify(TAGGER_PT, dst), "layer 0 forward", "f and o blocks swapped")
    assert "reproduces DST's output" in line and " in w_ih" not in line

    assert main(["verify", str(TAGGER_PT), str(dst)]) == 1
    out = capsys.readouterr().out
    assert "f and o blocks swapped" in out


def test_a_permutation_of_one_matrix_only_is_named_with_the_matrix(tmp_path):
    dst = broken(lstmconvert.load(TAGGER_PT), tmp_path / "w_ih.onnx", permute(1, 0, (2, 1, 0, 3), names=("w_ih",)))
    diagnosed(verify(TAGGER_PT, dst), "layer 1 forward", "i and g blocks swapped in w_ih", "reproduces")


def test_any_permutation_of_a_backward_direction_of_layer_1(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bi = lstmconvert.to_bidirectional(lstmconvert.load(TAGGER_PT), backward="random", preserve=False, seed=1)
    src = write(bi, tmp_path / "bi.pt")
    dst = broken(bi, tmp_path / "bi_bug.onnx", permute(1, 1, (1, 0, 3, 2)))
    report = verify(src, dst)
    diagnosed(report, "layer 1 reverse", "gates in order f, i, o, g", "reproduces")
    assert not any("layer 0" in line or "layer 1 forward" in line for line in report.diagnosis)

    wrong = broken(bi, tmp_path / "bi_wrong.onnx", lambda m: setattr(m.layers[1], "directions",
                                                                     [m.layers[1].directions[0]] * 2))
    diagnosed(verify(src, wrong), "layer 1 reverse", "SRC's layer 1 forward weights", "reproduces")


def test_transposed_matrix_and_bias_gates_swapped(tmp_path):
    model = lstmconvert.load(TAGGER_PT)

    def transpose(m):
        d = m.layers[0].directions[0]
        d.w_hh = np.ascontiguousarray(d.w_hh.T).reshape(d.w_hh.shape)

    diagnosed(verify(TAGGER_PT, broken(model, tmp_path / "t.onnx", transpose)), "layer 0 forward", "w_hh transposed", "reproduces")
    bias = broken(model, tmp_path / "b.onnx", permute(0, 0, (0, 2, 1, 3), names=("b_ih",)))
    diagnosed(verify(TAGGER_PT, bias), "layer 0 forward", "f and g blocks swapped in b_ih", "reproduces")

    def exchange_with_permutation(m):  # b_ih and b_hh exchanged, each with its f and o blocks swapped
        d = m.layers[1].directions[0]
        d.b_ih, d.b_hh = gates.permute_blocks(d.b_hh, (0, 3, 2, 1)), gates.permute_blocks(d.b_ih, (0, 3, 2, 1))

    diagnosed(verify(TAGGER_PT, broken(model, tmp_path / "x.onnx", exchange_with_permutation)),
              "layer 1 forward", "b_hh and b_ih swapped, with f and o blocks swapped", "reproduces")


def test_a_difference_no_rearrangement_explains_is_said_plainly(tmp_path):
    def noise(m):
        d = m.layers[0].directions[0]
        d.w_hh = d.w_hh + np.float32(0.3) * np.random.default_rng(0).standard_normal(d.w_hh.shape).astype(np.float32)

    report = verify(TAGGER_PT, broken(lstmconvert.load(TAGGER_PT), tmp_path / "n.onnx", noise))
    assert not report.passed
    assert any("DST's weights differ from SRC's" in line for line in report.diagnosis), report.diagnosis
    assert any(line.startswith("none of the known bugs") for line in report.diagnosis), report.diagnosis


def test_a_matrix_taken_from_the_wrong_layer(tmp_path):
    def wrong_layer(m):
        m.layers[1].directions[0].w_hh = m.layers[0].directions[0].w_hh.copy()

    dst = broken(lstmconvert.load(TAGGER_PT), tmp_path / "l.onnx", wrong_layer)
    diagnosed(verify(TAGGER_PT, dst), "layer 1 forward", "w_hh taken from SRC's layer 0 forward", "reproduces")
