"""In-place widening of ONNX graphs of any shape, and ``verify`` of whole graphs.

The fixtures (fixtures/make_onnx_inplace_fixtures.py) are small torch models exported by
``torch.onnx.export``, with the outputs torch computed. Every widened file is checked by the ONNX
checker (full check) and run in onnxruntime against torch's numbers and against the source file.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from lstmconvert.api import widen_in_place  # noqa: E402
from lstmconvert.checks import verify  # noqa: E402
from lstmconvert.cli import main  # noqa: E402
from lstmconvert.convert import PreservationWarning  # noqa: E402
from lstmconvert.formats.onnx_format import describe_edit, run_graph, signature  # noqa: E402
from lstmconvert.options import EditRequest  # noqa: E402
from onnx_helpers import FIXTURES  # noqa: E402

INPLACE = FIXTURES / "inplace"


def cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def reference(name: str) -> tuple:
    """({input name: array}, [torch's outputs]) saved by the fixture script."""
    ref = np.load(INPLACE / f"{name}.ref.npz")
    feed = {k[3:]: ref[k] for k in ref.files if k.startswith("in_")}
    outputs = [ref[f"out_{k}"] for k in range(sum(k.startswith("out_") for k in ref.files))]
    return feed, outputs


def initializers(path) -> dict:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, model


def node_inputs(model, op: str, name: str) -> list:
    return list(next(n for n in model.graph.node if n.op_type == op and n.name == name).input)


@pytest.mark.parametrize("name,consumers", [
    ("crnn", ["/fc/MatMul"]),
    ("attention", ["/score/MatMul", "/fc/Gemm"]),
    ("readers", ["/upper/LSTM", "/tagger/MatMul", "/state_fc/Gemm"]),
    ("extractor", []),
    ("packed", ["/fc/MatMul"]),
])
def test_cli_widens_in_place_and_keeps_the_function(tmp_path, capsys, name, consumers):
    src, dst = INPLACE / f"{name}.onnx", tmp_path / f"{name}_bi.onnx"
    code, out, err = cli(capsys, "convert", src, "-o", dst, "--lstm", "/rnn/LSTM")
    assert code == 0, err
    assert all(repr(c) in out for c in consumers), out
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)

    feed, torch_outputs = reference(name)
    widened, source = run_graph(dst, feed), run_graph(src, feed)
    assert len(widened) == len(torch_outputs)
    for got, want, before in zip(widened, torch_outputs, source):
        if got.shape != want.shape:  # the LSTM's own sequence is an output: [forward ‖ backward]
            assert name == "extractor" and got.shape[-1] == 2 * want.shape[-1]
            got = got[..., : want.shape[-1]]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(got, before, atol=1e-6, rtol=0)

    old, old_model = initializers(src)
    new, new_model = initializers(dst)
    w, r, b = node_inputs(new_model, "LSTM", "/rnn/LSTM")[1:4]
    w0, r0, b0 = node_inputs(old_model, "LSTM", "/rnn/LSTM")[1:4]
    for now, before in ((w, w0), (r, r0), (b, b0)):
        assert new[now].shape[0] == 2
        assert new[now][0].tobytes() == old[before][0].tobytes()  # forward direction bit-exact
    lstm = next(n for n in new_model.graph.node if n.name == "/rnn/LSTM")
    assert onnx.helper.get_attribute_value(next(a for a in lstm.attribute if a.name == "direction")) == b"bidirectional"
    # Every other node, and everything that is neither the LSTM's nor a consumer's weight, is carried as it was.
    carried = {n.SerializeToString() for n in new_model.graph.node}
    for node in old_model.graph.node:
        if node.name not in consumers + ["/rnn/LSTM"]:
            assert node.SerializeToString() in carried, node.name
    touched = {w0, r0, b0}
    for node in old_model.graph.node:
        if node.name in consumers:
            touched.update(node.input)
    for tensor_name, array in old.items():
        if tensor_name not in touched and tensor_name in new:
            assert new[tensor_name].tobytes() == array.tobytes(), tensor_name


def test_consumer_gets_zero_rows_for_the_backward_half(tmp_path):
    dst = tmp_path / "crnn_bi.onnx"
    widen_in_place(INPLACE / "crnn.onnx", dst, lstm=["/rnn/LSTM"], backward="random", seed=3)
    old, old_model = initializers(INPLACE / "crnn.onnx")
    new, new_model = initializers(dst)
    before = old[node_inputs(old_model, "MatMul", "/fc/MatMul")[1]]
    after = new[node_inputs(new_model, "MatMul", "/fc/MatMul")[1]]
    assert after.shape == (16, 3)
    assert after[:8].tobytes() == before.tobytes() and not after[8:].any()
    backward_w = new[node_inputs(new_model, "LSTM", "/rnn/LSTM")[1]][1]
    assert backward_w.any() and backward_w.tobytes() != new[node_inputs(new_model, "LSTM", "/rnn/LSTM")[1]][0].tobytes()


def test_every_forward_lstm_is_widened_by_default(tmp_path):
    """Both LSTMs of ``readers``: the upper one is widened itself and is the lower one's consumer."""
    dst = tmp_path / "readers_bi.onnx"
    result = widen_in_place(INPLACE / "readers.onnx", dst)
    assert result.widened == ["/rnn/LSTM", "/upper/LSTM"] and result.preservation.status == "exact"
    assert any("Y_h" in note for note in result.notes)
    new, model = initializers(dst)
    upper_w = new[node_inputs(model, "LSTM", "/upper/LSTM")[1]]
    assert upper_w.shape == (2, 28, 16) and not upper_w[:, :, 8:].any()
    feed, torch_outputs = reference("readers")
    for got, want in zip(run_graph(dst, feed), torch_outputs):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_lstm_selection_leaves_the_others_alone(tmp_path, capsys):
    dst = tmp_path / "readers_upper.onnx"
    code, out, err = cli(capsys, "convert", INPLACE / "readers.onnx", "-o", dst, "--lstm", "/upper/LSTM")
    assert code == 0, err
    model = onnx.load(str(dst))
    directions = {n.name: [onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "direction"]
                  for n in model.graph.node if n.op_type == "LSTM"}
    assert directions == {"/rnn/LSTM": [], "/upper/LSTM": [b"bidirectional"]}
    feed, torch_outputs = reference("readers")
    for got, want in zip(run_graph(dst, feed), torch_outputs):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("args,words", [
    (["--lstm", "/rnn/LSTM"], ["LayerNormalization node '/norm/LayerNormalization'", "--no-preserve"]),
    (["--lstm", "nope"], ["no LSTM node of that name", "'/rnn/LSTM'"]),
    (["--lstm", "/rnn/LSTM", "--consumer", "fc"], ["--consumer is for PyTorch"]),
    (["--lstm", "/rnn/LSTM", "--opset", "17"], ["--opset does not apply"]),
])
def test_refusals_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, words):
    src = tmp_path / "layernorm.onnx"
    shutil.copy(INPLACE / "layernorm.onnx", src)
    code, out, err = cli(capsys, "convert", src, "-o", tmp_path / "out.onnx", *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1, err
    assert str(src) in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layernorm.onnx"]


def test_no_preserve_widens_a_layernorm_consumer_with_a_warning(tmp_path):
    dst = tmp_path / "ln.onnx"
    with pytest.warns(PreservationWarning, match="LayerNormalization"):
        result = widen_in_place(INPLACE / "layernorm.onnx", dst, preserve=False)
    assert result.preservation.status == "none"
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    feed, torch_outputs = reference("layernorm")
    (got,) = run_graph(dst, feed)
    assert got.shape == torch_outputs[0].shape and not np.allclose(got, torch_outputs[0], atol=1e-3)


@pytest.mark.parametrize("merge,backward,status", [("sum", "zeros", "exact"), ("ave", "zeros", "exact"),
                                                   ("mul", "copy", "none")])
def test_merge_modes(tmp_path, merge, backward, status):
    dst = tmp_path / "attention.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = widen_in_place(INPLACE / "attention.onnx", dst, merge=merge, backward=backward)
    assert result.preservation.status == status
    assert any(issubclass(w.category, PreservationWarning) for w in caught) == (status == "none")
    feed, torch_outputs = reference("attention")
    (got,) = run_graph(dst, feed)
    assert np.allclose(got, torch_outputs[0], atol=1e-5, rtol=1e-5) == (status == "exact")


def test_dynamo_export_with_external_data_and_computed_reshape(tmp_path):
    """torch's dynamo exporter reshapes with a shape computed from Shape(); its weights are external."""
    src = FIXTURES / "torch_tagger_dynamo.onnx"
    dst = tmp_path / "tagger.onnx"
    result = widen_in_place(src, dst)
    assert len(result.widened) == 2 and result.preservation.status == "exact"
    ref = np.load(str(src).replace(".onnx", ".ref.npz"))
    (name, _, _), = signature(src)
    feed = {name: ref["inputs"]}
    np.testing.assert_allclose(run_graph(dst, feed)[0], run_graph(src, feed)[0], atol=1e-6, rtol=0)


def test_signature_and_describe_edit():
    assert signature(INPLACE / "crnn.onnx") == [("features", (None, 4, None), "float32")]
    assert signature(INPLACE / "attention.onnx") == [("tokens", (None, None), "int64")]
    rows = {row["name"]: row for row in describe_edit(INPLACE / "crnn.onnx", EditRequest())}
    assert rows["/rnn/LSTM"]["role"] == "lstm" and "bidirectional" in rows["/rnn/LSTM"]["change"]
    assert rows["/fc/MatMul"]["role"] == "consumer" and "[8, 3] -> [16, 3]" in rows["/fc/MatMul"]["change"]
    assert rows["/rnn/Squeeze"]["role"] == "through" and rows["/conv/Conv"]["role"] == "other"


# -- verify of whole graphs ---------------------------------------------------------------------------

def test_verify_whole_graphs_pass(tmp_path, capsys):
    for name in ("attention", "readers", "packed"):  # token ids, three outputs, sequence lengths
        dst = tmp_path / f"{name}.onnx"
        widen_in_place(INPLACE / f"{name}.onnx", dst, backward="random")
        code, out, err = cli(capsys, "verify", INPLACE / f"{name}.onnx", dst)
        assert code == 0, out + err
        assert "whole graphs run" in out and "PASS: DST computes what SRC computes" in out
    report = verify(INPLACE / "readers.onnx", tmp_path / "readers.onnx", batch_sizes=[2], steps=[3])
    assert report.passed and len(report.cases) == 3  # one case per output


def test_verify_widened_output_compares_its_forward_half(tmp_path, capsys):
    dst = tmp_path / "extractor.onnx"
    widen_in_place(INPLACE / "extractor.onnx", dst)
    code, out, _ = cli(capsys, "verify", INPLACE / "extractor.onnx", dst)
    assert code == 0 and "PASS: DST's forward half computes what SRC computes" in out


def _break(path, op: str, node_name: str, change) -> None:
    model = onnx.load(str(path))
    name = node_inputs(model, op, node_name)[1]
    tensor = next(t for t in model.graph.initializer if t.name == name)
    array = numpy_helper.to_array(tensor).copy()
    change(array)
    tensor.CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(model, str(path))


@pytest.mark.parametrize("op,node,change", [
    ("MatMul", "/fc/MatMul", lambda a: a.__setitem__((12, 1), 0.5)),  # a non-zero backward row
    ("LSTM", "/rnn/LSTM", lambda a: a.__setitem__((0, 3, 2), a[0, 3, 2] + 1e-2)),  # a forward weight moved
])
def test_verify_catches_a_broken_edit(tmp_path, capsys, op, node, change):
    dst = tmp_path / "crnn.onnx"
    widen_in_place(INPLACE / "crnn.onnx", dst)
    _break(dst, op, node, change)
    code, out, _ = cli(capsys, "verify", INPLACE / "crnn.onnx", dst)
    assert code == 1 and "FAIL" in out


def test_large_weights_go_to_external_data(tmp_path, monkeypatch):
    """Past the 2 GB threshold (forced low here) weights are written beside the model, as the writer does."""
    from lstmconvert.formats.onnx_format import editor

    monkeypatch.setattr(editor, "EXTERNAL_DATA_THRESHOLD", 0)
    monkeypatch.setattr(editor, "PENDING_BYTES", 64)
    dst = tmp_path / "crnn.onnx"
    widen_in_place(INPLACE / "crnn.onnx", dst)
    assert (tmp_path / "crnn.onnx.data").is_file()
    onnx.checker.check_model(str(dst), full_check=True)
    feed, torch_outputs = reference("crnn")
    np.testing.assert_allclose(run_graph(dst, feed)[0], torch_outputs[0], atol=1e-5, rtol=1e-5)


def test_layout_1_in_the_reference_evaluator(tmp_path):
    """layout=1 graphs (batch-first LSTM nodes), which onnxruntime refuses to run, checked in onnx's reference."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    hidden, features = 4, 3
    arrays = {"W": rng.standard_normal((1, 4 * hidden, features)), "R": rng.standard_normal((1, 4 * hidden, hidden)),
              "B": rng.standard_normal((1, 8 * hidden)), "M": rng.standard_normal((hidden, 2)),
              "M2": rng.standard_normal((hidden, 5))}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    inits += [numpy_helper.from_array(np.array([k], np.int64), f"axis{k}") for k in (1, 2)]
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h"], hidden_size=hidden, layout=1),
             helper.make_node("Squeeze", ["y", "axis2"], ["steps"]), helper.make_node("MatMul", ["steps", "M"], ["out"]),
             helper.make_node("Squeeze", ["y_h", "axis1"], ["last"]), helper.make_node("MatMul", ["last", "M2"], ["out2"])]
    graph = helper.make_graph(nodes, "layout1", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "T", 2]),
                               helper.make_tensor_value_info("out2", TensorProto.FLOAT, ["N", 5])], inits)
    src, dst = tmp_path / "layout1.onnx", tmp_path / "layout1_bi.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    widen_in_place(src, dst, backward="random")
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    x = rng.standard_normal((2, 5, features)).astype(np.float32)
    before = ReferenceEvaluator(str(src)).run(None, {"x": x})
    after = ReferenceEvaluator(str(dst)).run(None, {"x": x})
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)


def _two_branch_model(path) -> None:
    """Two inputs, an LSTM each; their last states are concatenated and read by one Gemm (made with onnx.helper)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    inits, nodes = [], []
    for branch, (features, hidden) in enumerate(((3, 4), (2, 5))):
        for label, shape in (("W", (1, 4 * hidden, features)), ("R", (1, 4 * hidden, hidden)), ("B", (1, 8 * hidden))):
            inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), f"{label}{branch}"))
        nodes += [helper.make_node("LSTM", [f"x{branch}", f"W{branch}", f"R{branch}", f"B{branch}"], ["", f"h{branch}"],
                                   hidden_size=hidden, name=f"lstm{branch}"),
                  helper.make_node("Squeeze", [f"h{branch}", "axis0"], [f"last{branch}"])]
    inits += [numpy_helper.from_array(np.array([0], np.int64), "axis0"),
              numpy_helper.from_array(rng.standard_normal((2, 9)).astype(np.float32), "dense.weight"),
              numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "dense.bias")]
    nodes += [helper.make_node("Concat", ["last0", "last1"], ["both"], axis=-1),
              helper.make_node("Gemm", ["both", "dense.weight", "dense.bias"], ["out"], transB=1, name="dense")]
    inputs = [helper.make_tensor_value_info(f"x{b}", TensorProto.FLOAT, ["T", "N", f]) for b, f in ((0, 3), (1, 2))]
    graph = helper.make_graph(nodes, "branches", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_two_branches_concatenated_and_verified_as_a_whole(tmp_path, capsys):
    src, dst = tmp_path / "branches.onnx", tmp_path / "branches_bi.onnx"
    _two_branch_model(src)
    result = widen_in_place(src, dst)
    assert result.widened == ["lstm0", "lstm1"] and result.consumers == ["dense"]
    weight = numpy_helper.to_array(next(t for t in onnx.load(str(dst)).graph.initializer if t.name == "dense.weight"))
    old = numpy_helper.to_array(next(t for t in onnx.load(str(src)).graph.initializer if t.name == "dense.weight"))
    # [h0 (4) | h1 (5)] became [h0 | back0 (4) | h1 | back1 (5)]
    assert weight.shape == (2, 18) and not weight[:, 4:8].any() and not weight[:, 13:].any()
    assert weight[:, :4].tobytes() == old[:, :4].tobytes() and weight[:, 8:13].tobytes() == old[:, 4:].tobytes()
    code, out, err = cli(capsys, "verify", src, dst, "--batch", "2", "--steps", "3")
    assert code == 0 and "x0 (3, 2, 3)" in out and "x1 (3, 2, 2)" in out, out + err


def test_describe_edit_shows_a_refusal_on_its_node():
    rows = {row["name"]: row for row in describe_edit(INPLACE / "layernorm.onnx", EditRequest())}
    assert rows["/norm/LayerNormalization"]["change"].startswith("refused: ")
    assert rows["/rnn/LSTM"]["role"] == "lstm" and rows["/fc/MatMul"]["role"] == "other"


def test_forward_part_drops_each_backward_block():
    from lstmconvert.checks.whole_model import forward_part

    # source features [a0 a1 | c0 | b0 b1 b2] where a and b came from LSTMs; widened: [a | a' | c | b | b']
    widened = np.array([[1, 2, 91, 92, 3, 4, 5, 6, 93, 94, 95]])
    placed = {"axis": 1, "size": 6, "blocks": [[0, 2], [3, 3]]}
    assert forward_part(widened, (1, 6), placed).tolist() == [[1, 2, 3, 4, 5, 6]]
    assert forward_part(widened[:, :8], (1, 4), None).tolist() == [[1, 2, 91, 92]]  # no record: leading part
    assert forward_part(widened, (1, 6), placed, allow_wider=False) is None
    assert forward_part(widened, (2, 6), placed) is None


def test_verify_refuses_models_with_different_inputs(tmp_path, capsys):
    widen_in_place(INPLACE / "attention.onnx", tmp_path / "attention.onnx")
    code, out, err = cli(capsys, "verify", INPLACE / "crnn.onnx", tmp_path / "attention.onnx")
    assert code == 2 and out == "" and "takes inputs" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("merge,backward", [("concat", "random"), ("sum", "zeros"), ("ave", "zeros")])
def test_initial_states_from_graph_inputs(tmp_path, merge, backward):
    """A caller-given (non-zero) initial state: the backward direction starts from zeros, so sum/ave stay exact."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("W", (1, 16, 3)), ("R", (1, 16, 4)), ("M", (4, 2)))]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "", "", "h0", "c0"], ["y"], hidden_size=4),
             helper.make_node("Squeeze", ["y", "axis1"], ["steps"]), helper.make_node("MatMul", ["steps", "M"], ["out"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", 3])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "N", 4]) for n in ("h0", "c0")]
    graph = helper.make_graph(nodes, "states", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                                                      ["T", "N", 2])], inits)
    src, dst = tmp_path / "states.onnx", tmp_path / "states_bi.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    assert widen_in_place(src, dst, merge=merge, backward=backward).preservation.status == "exact"
    feed = {"x": rng.standard_normal((5, 2, 3)).astype(np.float32),
            "h0": rng.standard_normal((1, 2, 4)).astype(np.float32), "c0": rng.standard_normal((1, 2, 4)).astype(np.float32)}
    np.testing.assert_allclose(run_graph(dst, feed)[0], run_graph(src, feed)[0], atol=1e-6, rtol=0)


def test_verify_refuses_an_input_declared_empty(tmp_path, capsys):
    """An input with a fixed axis of size 0 has nothing to run on (onnxruntime aborts the process on it)."""
    model = onnx.load(str(INPLACE / "extractor.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    src, dst = tmp_path / "empty.onnx", tmp_path / "empty_bi.onnx"
    onnx.save(model, str(src))
    widen_in_place(src, dst)
    code, out, err = cli(capsys, "verify", src, dst)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert str(src) in err and "axis of size 0" in err


@pytest.mark.parametrize("name", ["seq2seq", "seq2seq_dynamo"])
def test_encoder_decoder_widens_the_encoder_and_feeds_the_decoder_its_forward_state(tmp_path, capsys, name):
    """Both torch exporters' graphs of an encoder whose (h, c) start a decoder: the encoder becomes
    bidirectional; the decoder, which starts from states computed in the graph, stays forward and gets the forward
    direction's state through a Gather, so the graph computes what torch computed."""
    src, dst = INPLACE / f"{name}.onnx", tmp_path / f"{name}_bi.onnx"
    code, out, err = cli(capsys, "convert", src, "-o", dst)
    assert code == 0, err
    assert "function preservation: exact" in out and "stays unidirectional" in out
    model = onnx.load(str(dst))
    onnx.checker.check_model(model, full_check=True)
    directions = sorted(next((a.s.decode() for a in n.attribute if a.name == "direction"), "forward")
                        for n in model.graph.node if n.op_type == "LSTM")
    assert directions == ["bidirectional", "forward"]
    feed, torch_outputs = reference("seq2seq")
    (got,) = run_graph(dst, feed)
    np.testing.assert_allclose(got, torch_outputs[0], atol=1e-5, rtol=1e-5)
    rows = describe_edit(src, EditRequest())
    (decoder,) = [row["name"] for row in rows if row["type"] == "LSTM" and row["role"] != "lstm"]
    assert "stays unidirectional" in next(row["change"] for row in rows if row["name"] == decoder)
    code, _, err = cli(capsys, "convert", src, "-o", tmp_path / "dec.onnx", "--lstm", decoder)
    assert code == 2 and "starts from states computed in the graph" in err
