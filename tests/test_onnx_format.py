"""The ONNX format: reading exporter output, writing LSTM graphs, running them in onnxruntime.

References are always numbers a real runtime produced: PyTorch or Keras (saved next to each
fixture by fixtures/make_onnx_fixtures.py, or computed here by torch), or onnxruntime running the
source file.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from needs import needs

needs("onnx")

import onnx  # noqa: E402

import lstmconvert  # noqa: E402
from lstmconvert.cli import main
from lstmconvert.model import Activation, Dense, LSTMDirection, LSTMLayer, SequenceModel

from onnx_helpers import (FIXTURES, ROOT, assert_bits_equal, input_names, lstm_nodes, node_attributes,
                          ort_run, recording_opens)

# name -> (input layout of the file: "NT" batch-first / "TN" time-first, output is a sequence?)
TORCH_FIXTURES = {
    "torch_tagger_ts": ("TN", True),
    "torch_tagger_dynamo": ("TN", True),
    "torch_classifier_ts": ("NT", False),
    "torch_bi_tagger_ts": ("TN", True),
    "torch_bi_classifier_dynamo": ("NT", False),
    "torch_packed_ts": ("NT", True),
    # Exporters used the way people use them (see fixtures/make_onnx_fixtures.py, torch_quirk_fixtures).
    "quirk_dynamo_unoptimized_states": ("NT", True),
    "quirk_ts_keep_initializers": ("NT", False),
    "quirk_ts_fp16_fixed_length": ("NT", True),
    "quirk_ts_bidirectional_manual_last": ("NT", False),
}
TF_FIXTURES = {"tf_tagger": ("NT", True), "tf_bi_classifier": ("NT", False), "tf_hard_sigmoid": ("NT", True),
               "tf_go_backwards": ("NT", True), "quirk_tf_bidirectional_ave": ("NT", True),
               "quirk_tf_bidirectional_mul": ("NT", True), "quirk_tf_dropout_states": ("NT", True),
               "quirk_keras3_export": ("NT", True)}
SOURCE_FIXTURES = {**TORCH_FIXTURES, **TF_FIXTURES}
UNIDIRECTIONAL = ["torch_tagger_ts", "torch_tagger_dynamo", "torch_classifier_ts", "tf_tagger", "tf_hard_sigmoid",
                  "quirk_dynamo_unoptimized_states", "quirk_ts_keep_initializers", "quirk_tf_dropout_states",
                  "quirk_keras3_export"]


def tolerance(values: np.ndarray, fp32: float) -> float:
    """``fp32`` for float32 outputs; float16 outputs carry about three decimal digits."""
    return 2e-3 if np.asarray(values).dtype == np.float16 else fp32


def load_quietly(path: Path, **hints):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lstmconvert.load(path, **hints)


def feed_for(path: Path, batch_major: np.ndarray, layout: str) -> dict:
    """The file's own feed: its data input in its layout (plus packed lengths counted by hand)."""
    names = input_names(path)
    data = batch_major if layout == "NT" else np.swapaxes(batch_major, 0, 1)
    feed = {names[0]: data}
    if len(names) > 1:  # torch_packed_ts: lengths of the right-padded rows
        feed[names[1]] = (batch_major != 0).sum(axis=1).astype(np.int64)
    return feed


def reference(name: str) -> tuple:
    ref = np.load(FIXTURES / f"{name}.ref.npz")
    return ref["inputs"], ref["outputs"]


def convert(src: Path, dst: Path, *args: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["convert", str(src), "-o", str(dst), *args])
    assert code == 0


# -- the fixtures themselves ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SOURCE_FIXTURES))
def test_fixture_file_runs_like_its_framework(name):
    """onnxruntime on the exported file reproduces torch/Keras (checks fixtures and harness)."""
    layout, _ = SOURCE_FIXTURES[name]
    inputs, expected = reference(name)
    path = FIXTURES / f"{name}.onnx"
    got = ort_run(path, feed_for(path, inputs, layout))
    if layout == "TN" and got.ndim == 3:
        got = np.swapaxes(got, 0, 1)
        expected = np.swapaxes(expected, 0, 1)
    np.testing.assert_allclose(got.astype(np.float64), expected, atol=tolerance(got, 1e-5), rtol=0)


@pytest.mark.parametrize("name", sorted(TORCH_FIXTURES))
def test_torch_exports_read_back_to_the_state_dict_bit_exact(name):
    torch = pytest.importorskip("torch")
    state = {k: v.numpy() for k, v in torch.load(FIXTURES / f"{name}.pt", weights_only=True).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lstmconvert.load(FIXTURES / f"{name}.onnx")
    if "embedding.weight" in state:
        assert_bits_equal(model.embedding.weight, state["embedding.weight"], "embedding")
    layer_count = sum(1 for k in state if k.startswith("lstm.weight_ih_l") and not k.endswith("_reverse"))
    assert len(model.layers) == layer_count
    for k, layer in enumerate(model.layers):
        for d, direction in enumerate(layer.directions):
            suffix = f"l{k}" + ("_reverse" if d else "")
            assert_bits_equal(direction.w_ih, state[f"lstm.weight_ih_{suffix}"], f"w_ih {suffix}")
            assert_bits_equal(direction.w_hh, state[f"lstm.weight_hh_{suffix}"], f"w_hh {suffix}")
            assert_bits_equal(direction.b_ih, state[f"lstm.bias_ih_{suffix}"], f"b_ih {suffix}")
            assert_bits_equal(direction.b_hh, state[f"lstm.bias_hh_{suffix}"], f"b_hh {suffix}")
    (dense,) = model.head
    assert_bits_equal(dense.weight, state["fc.weight"], "fc.weight")
    assert_bits_equal(dense.bias, state["fc.bias"], "fc.bias")


@pytest.mark.parametrize("name", sorted(TF_FIXTURES))
def test_tf2onnx_files_read_back_to_the_keras_weights_bit_exact(name):
    weights = np.load(FIXTURES / f"{name}.weights.npz")
    arrays = [weights[f"arr_{k}"] for k in range(len(weights.files))]
    model = load_quietly(FIXTURES / f"{name}.onnx")
    if model.embedding is not None:
        assert_bits_equal(model.embedding.weight, arrays.pop(0), "embedding")
    for layer in model.layers:
        for direction in layer.directions:
            kernel, recurrent, bias = arrays.pop(0), arrays.pop(0), arrays.pop(0)
            assert_bits_equal(direction.w_ih, kernel.T, "kernel")
            assert_bits_equal(direction.w_hh, recurrent.T, "recurrent_kernel")
            assert_bits_equal(direction.b_ih, bias, "bias")
            assert direction.b_hh is None  # tf2onnx writes Rb = 0
    (dense,) = model.head
    assert_bits_equal(dense.weight, arrays.pop(0).T, "dense kernel")
    assert_bits_equal(dense.bias, arrays.pop(0), "dense bias")
    assert not arrays


def test_keras_go_backwards_reads_as_a_reverse_layer_with_reversed_output():
    (layer,) = lstmconvert.load(FIXTURES / "tf_go_backwards.onnx").layers
    assert layer.reverse and layer.reversed_output and not layer.bidirectional


def test_hints_cannot_contradict_the_file():
    with pytest.raises(lstmconvert.LstmConvertError, match="time-first"):
        lstmconvert.load(FIXTURES / "torch_tagger_ts.onnx", batch_first=True)
    with pytest.raises(lstmconvert.LstmConvertError, match="readout is 'sequence'"):
        lstmconvert.load(FIXTURES / "torch_tagger_ts.onnx", readout="last")


def test_tf_keras_hard_sigmoid_reads_as_alpha_0_2():
    model = lstmconvert.load(FIXTURES / "tf_hard_sigmoid.onnx")
    assert model.layers[0].directions[0].activations[0] == Activation("hard_sigmoid", alpha=0.2, beta=0.5)


# -- ONNX -> ONNX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SOURCE_FIXTURES))
def test_keep_direction_reproduces_onnxruntime_outputs(name, tmp_path):
    layout, _ = SOURCE_FIXTURES[name]
    inputs, expected = reference(name)
    src, dst = FIXTURES / f"{name}.onnx", tmp_path / "out.onnx"
    convert(src, dst, "--keep-direction")
    source_out = ort_run(src, feed_for(src, inputs, layout))
    converted = ort_run(dst, feed_for(dst, inputs, layout))
    np.testing.assert_allclose(converted, source_out, atol=tolerance(converted, 1e-6), rtol=0)
    onnx.checker.check_model(str(dst), full_check=True)
    # Same interface: input name and layout (packed lengths are counted in the graph instead).
    assert input_names(dst) == input_names(src)[:1]


@pytest.mark.parametrize("name", UNIDIRECTIONAL)
def test_widening_to_bidirectional_preserves_the_function(name, tmp_path):
    layout, _ = SOURCE_FIXTURES[name]
    inputs, expected = reference(name)
    dst = tmp_path / "bi.onnx"
    convert(FIXTURES / f"{name}.onnx", dst)
    assert [node_attributes(n)["direction"] for n in lstm_nodes(dst)] == ["bidirectional"] * len(lstm_nodes(dst))
    got = ort_run(dst, feed_for(dst, inputs, layout))
    source_out = ort_run(FIXTURES / f"{name}.onnx", feed_for(FIXTURES / f"{name}.onnx", inputs, layout))
    np.testing.assert_allclose(got, source_out, atol=1e-6, rtol=0)


@pytest.mark.parametrize("merge", ["sum", "ave"])
def test_widening_with_sum_and_ave_merges(merge, tmp_path):
    src = FIXTURES / "torch_tagger_ts.onnx"
    inputs, _ = reference("torch_tagger_ts")
    dst = tmp_path / "bi.onnx"
    convert(src, dst, "--merge", merge, "--backward", "zeros")
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert {"sum": "ReduceSum", "ave": "ReduceMean"}[merge] in ops
    np.testing.assert_allclose(ort_run(dst, feed_for(dst, inputs, "TN")), ort_run(src, feed_for(src, inputs, "TN")),
                               atol=1e-6, rtol=0)


def test_bidirectional_last_state_uses_the_reverse_state_after_t0(tmp_path):
    """Widen a last-state classifier with copied weights: Y_h[reverse] must be the state after t=0."""
    torch = pytest.importorskip("torch")
    src = FIXTURES / "torch_classifier_ts.onnx"
    inputs, _ = reference("torch_classifier_ts")
    model = lstmconvert.load(src)
    bi = lstmconvert.to_bidirectional(model, backward="copy")
    # Give the head real weights on the backward half so the reverse state matters.
    rng = np.random.default_rng(5)
    bi.head[0].weight[:, 7:] = rng.uniform(-0.5, 0.5, (3, 7)).astype(np.float32)
    lstmconvert.save(bi, tmp_path / "bi.onnx")
    got = ort_run(tmp_path / "bi.onnx", {"x": inputs})

    lstm = torch.nn.LSTM(4, 7, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for k, layer in enumerate(bi.layers):
            for d, direction in enumerate(layer.directions):
                suffix = f"l{k}" + ("_reverse" if d else "")
                for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                    torch_name = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}[name]
                    getattr(lstm, f"{torch_name}_{suffix}").copy_(torch.from_numpy(getattr(direction, name)))
        _, (h, _) = lstm(torch.from_numpy(inputs))
        logits = torch.cat([h[-2], h[-1]], 1).numpy() @ bi.head[0].weight.T + bi.head[0].bias
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["handmade_peephole_clip", "handmade_activations", "handmade_reverse_sum",
                                  "handmade_two_node_bidirectional"])
def test_onnx_only_features_survive_onnx_to_onnx(name, tmp_path):
    src, dst = FIXTURES / f"{name}.onnx", tmp_path / "out.onnx"
    inputs = np.load(FIXTURES / f"{name}.ref.npz")["inputs"]
    convert(src, dst, "--keep-direction")
    feed = {"x": np.swapaxes(inputs, 0, 1)}
    np.testing.assert_allclose(ort_run(dst, feed), ort_run(src, feed), atol=1e-6, rtol=0)
    before = [node_attributes(n) for n in lstm_nodes(src)]
    after = [node_attributes(n) for n in lstm_nodes(dst)]
    for a, b in zip(after, before):
        for key in ("direction", "clip", "input_forget", "activations"):
            if key in b:
                assert a.get(key, "forward" if key == "direction" else None) == b[key], key
    if name == "handmade_two_node_bidirectional":
        assert [node_attributes(n)["direction"] for n in lstm_nodes(dst)] == ["bidirectional"]
        return
    src_p = [len(n.input) > 7 and n.input[7] for n in lstm_nodes(src)]
    dst_p = [len(n.input) > 7 and bool(n.input[7]) for n in lstm_nodes(dst)]
    assert [bool(p) for p in src_p] == dst_p


def test_layout_1_is_read_and_written_as_layout_0_with_transposes(tmp_path):
    """onnxruntime refuses layout=1, so the source's reference is ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    src, dst = FIXTURES / "handmade_layout1.onnx", tmp_path / "out.onnx"
    inputs = np.load(FIXTURES / "handmade_layout1.ref.npz")["inputs"]
    model = lstmconvert.load(src)
    assert model.batch_first
    convert(src, dst, "--keep-direction")
    assert all(node_attributes(n).get("layout", 0) == 0 for n in lstm_nodes(dst))
    (expected,) = ReferenceEvaluator(str(src)).run(None, {"x": inputs})
    np.testing.assert_allclose(ort_run(dst, {"x": inputs}), expected, atol=1e-6, rtol=0)


def test_local_functions_no_ops_and_zero_peepholes(tmp_path):
    """An LSTM inside a local function, Identity/Dropout/Cast around it, all-zero P, a Gemm head."""
    src = FIXTURES / "handmade_function_dropout.onnx"
    inputs = np.load(FIXTURES / "handmade_function_dropout.ref.npz")["inputs"]
    model = lstmconvert.load(src)
    assert model.readout == "last" and model.head[0].activation == "softmax"
    assert model.layers[0].directions[0].peephole is None  # all-zero P carries nothing
    feed = {"x": np.swapaxes(inputs, 0, 1)}
    for extra in (["--keep-direction"], []):
        dst = tmp_path / f"out{len(extra)}.onnx"
        convert(src, dst, *extra)
        np.testing.assert_allclose(ort_run(dst, feed), ort_run(src, feed), atol=1e-6, rtol=0)


# -- masked models against PyTorch packed sequences ----------------------------------------------------
def _packed_reference(module, tokens_or_features, lengths, batch_first, last_state, fc):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    x = torch.from_numpy(tokens_or_features)
    with torch.no_grad():
        packed = pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False)
        y, (h, _) = module(packed)
        if last_state:
            return fc(torch.cat([h[-2], h[-1]], 1)).numpy()
        y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
        return fc(y).numpy()


def test_masked_tokens_match_torch_packed_sequences(tmp_path):
    """The packed-sequence export, rewritten with lengths counted from the padding, on ragged batches."""
    torch = pytest.importorskip("torch")
    state = torch.load(FIXTURES / "torch_packed_ts.pt", weights_only=True)
    embedding, lstm, fc = torch.nn.Embedding(12, 6, padding_idx=0), torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True), torch.nn.Linear(10, 4)
    embedding.load_state_dict({"weight": state["embedding.weight"]})
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    fc.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("fc.")})
    dst = tmp_path / "masked.onnx"
    convert(FIXTURES / "torch_packed_ts.onnx", dst, "--keep-direction")
    assert input_names(dst) == ["tokens"]

    rng = np.random.default_rng(9)
    lengths = np.array([3, 7, 1, 5, 7])  # unsorted, with a full-length row
    tokens = rng.integers(1, 12, (5, 7))
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    got = ort_run(dst, {"tokens": tokens})
    with torch.no_grad():
        embedded = embedding(torch.from_numpy(tokens)).numpy()
    expected = _packed_reference(lstm, embedded, lengths, True, False, fc)
    real = tokens != 0
    np.testing.assert_allclose(got[real], expected[real], atol=1e-6, rtol=0)
    # Without the mask the backward direction would start in the padding: the check can fail.
    unmasked = lstmconvert.load(dst).replace(masked=False)
    lstmconvert.save(unmasked, tmp_path / "unmasked.onnx")
    assert np.abs(ort_run(tmp_path / "unmasked.onnx", {"tokens": tokens})[real] - expected[real]).max() > 1e-3


@pytest.mark.parametrize("batch_first", [True, False])
def test_masked_features_widened_match_torch_packed_last_state(batch_first, tmp_path):
    """A forward LSTM on features, masked, widened with copied weights; readout = last state."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    source = torch.nn.LSTM(3, 4, batch_first=batch_first)
    fc = torch.nn.Linear(4, 2)
    direction = LSTMDirection(**{ours: getattr(source, f"{theirs}_l0").detach().numpy().copy() for ours, theirs in
                                 (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"))})
    model = SequenceModel(layers=[LSTMLayer([direction])], head=[Dense(fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy())],
                          batch_first=batch_first, readout="last", masked=True, mask_value=0.0)
    bi = lstmconvert.to_bidirectional(model, backward="copy")
    bi.head[0].weight[:, 4:] = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 4)).astype(np.float32)
    lstmconvert.save(bi, tmp_path / "bi.onnx")

    rng = np.random.default_rng(2)
    lengths = np.array([2, 6, 4])
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0
    feed = x if batch_first else np.swapaxes(x, 0, 1).copy()
    got = ort_run(tmp_path / "bi.onnx", {"input": feed})

    lstm = torch.nn.LSTM(3, 4, batch_first=batch_first, bidirectional=True)
    head = torch.nn.Linear(8, 2)
    with torch.no_grad():
        for d, direction in enumerate(bi.layers[0].directions):
            suffix = "l0" + ("_reverse" if d else "")
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_{suffix}").copy_(torch.from_numpy(getattr(direction, ours)))
        head.weight.copy_(torch.from_numpy(bi.head[0].weight))
        head.bias.copy_(torch.from_numpy(bi.head[0].bias))
    expected = _packed_reference(lstm, feed, lengths, batch_first, True, head)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


# -- exporter quirks -----------------------------------------------------------------------------------
def test_lstm_states_returned_beside_the_output_are_left_out_with_a_warning(tmp_path):
    """PyTorch ``return fc(y), (h, c)`` (dynamo, unoptimized) and Keras ``return_state`` (tf2onnx)."""
    for name, dropped in (("quirk_dynamo_unoptimized_states", "'h_n', 'c_n'"),
                          ("quirk_tf_dropout_states", "'lstm_2', 'lstm_2_1'")):
        with pytest.warns(UserWarning, match=f"{dropped} \\(LSTM states\\) are left out"):
            model = lstmconvert.load(FIXTURES / f"{name}.onnx")
        first = onnx.load(str(FIXTURES / f"{name}.onnx"), load_external_data=False).graph.output[0].name
        assert model.meta["onnx"]["output_names"] == [first]
        convert(FIXTURES / f"{name}.onnx", tmp_path / f"{name}.onnx", "--keep-direction")
        assert [o.name for o in onnx.load(str(tmp_path / f"{name}.onnx")).graph.output] == [first]


def test_unoptimized_dynamo_export_weights_are_folded_from_shape_arithmetic():
    """optimize=False slices W at Shape(initial state)[2] * k: those bounds must fold to the real weights."""
    graph = onnx.load(str(FIXTURES / "quirk_dynamo_unoptimized_states.onnx")).graph
    producers = {out: node for node in graph.node for out in node.output}
    w_input = next(n for n in graph.node if n.op_type == "LSTM").input[1]
    assert w_input not in {t.name for t in graph.initializer}  # computed in the graph, not stored
    assert "Shape" in {n.op_type for n in graph.node} and producers[w_input].op_type != "Constant"
    # The weights themselves are checked against the state_dict by the bit-exact test above.


def test_initializers_listed_as_inputs_are_read_as_weights_with_a_warning(tmp_path):
    src = FIXTURES / "quirk_ts_keep_initializers.onnx"
    with pytest.warns(UserWarning, match=r"6 initializer\(s\) .* are also graph inputs"):
        model = lstmconvert.load(src)
    assert model.readout == "last"  # y[:, y.shape[1] - 1], with the index computed from the shape
    # onnxruntime really lets a caller replace them: feeding other weights changes the output.
    inputs, expected = reference("quirk_ts_keep_initializers")
    bias = next(i for i in onnx.load(str(src)).graph.initializer if i.name == "fc.bias")
    changed = ort_run(src, {"x": inputs, "fc.bias": onnx.numpy_helper.to_array(bias) + 1})
    np.testing.assert_allclose(changed, expected + 1, atol=1e-5)
    convert(src, tmp_path / "out.onnx", "--keep-direction")
    assert input_names(tmp_path / "out.onnx") == ["x"]
    assert len(onnx.load(str(tmp_path / "out.onnx")).graph.input) == 1


def test_float16_export_runs_without_crashing_onnxruntime(tmp_path):
    """onnxruntime's NchwcTransformer kills the process on this graph (AVX-512 CPUs) unless turned off."""
    code = ("import sys, numpy as np, lstmconvert; "
            "ref = np.load(sys.argv[2]); out = lstmconvert.run(sys.argv[1], ref['inputs']); "
            "sys.exit(0 if out.dtype == np.float16 and np.abs(out.astype(np.float32) - ref['outputs']).max() < 2e-3 else 3)")
    result = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "quirk_ts_fp16_fixed_length.onnx"),
                             str(FIXTURES / "quirk_ts_fp16_fixed_length.ref.npz")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])


def test_verify_tests_a_file_at_the_only_length_it_runs_at(tmp_path):
    """An exporter given no dynamic axes fixed the length: verify uses it instead of failing on the defaults
    (and says so); a length the user gives still wins, and fails with the option to use."""
    src = FIXTURES / "quirk_ts_fp16_fixed_length.onnx"
    dst = tmp_path / "bi.onnx"
    lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(src)), dst)
    report = lstmconvert.verify(src, dst)
    assert report.passed and report.inputs_note == "length 6, the only one SRC runs at"
    assert report.cases and all(", 6" in case.label for case in report.cases)
    assert "inputs: length 6" in report.render_text()
    with pytest.raises(lstmconvert.LstmConvertError, match="--steps 6"):
        lstmconvert.verify(src, dst, steps=[4])


def test_a_fixed_length_is_recorded_and_named_when_other_lengths_are_run():
    src = FIXTURES / "quirk_ts_fp16_fixed_length.onnx"
    model = lstmconvert.load(src)
    assert model.meta["fixed_sizes"] == {"steps": 6}
    inputs, _ = reference("quirk_ts_fp16_fixed_length")
    with pytest.raises(lstmconvert.LstmConvertError, match="fixed time axis of size 6 .* --steps 6"):
        lstmconvert.run(src, inputs[:, :4])
    assert lstmconvert.run(src, inputs[:1]).shape == (1, 6, 3)  # the batch axis stayed dynamic


def test_onnxruntime_optimized_float16_file_is_refused_with_a_hint(tmp_path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(FIXTURES / "quirk_ts_fp16_fixed_length.onnx"), options,
                                 providers=["CPUExecutionProvider"], disabled_optimizers=["NchwcTransformer"])
    with pytest.raises(lstmconvert.LstmConvertError, match="onnxruntime's optimizer inserts such casts"):
        lstmconvert.load(tmp_path / "optimized.onnx")


@pytest.mark.parametrize("name,merge", [("quirk_tf_bidirectional_ave", "ave"), ("quirk_tf_bidirectional_mul", "mul")])
def test_tf2onnx_bidirectional_merges(name, merge, tmp_path):
    """tf2onnx writes 'ave' as (forward + backward) * 0.5; the written 'mul' graph must run (scalar Gathers)."""
    assert lstmconvert.load(FIXTURES / f"{name}.onnx").layers[0].merge == merge
    inputs, expected = reference(name)
    convert(FIXTURES / f"{name}.onnx", tmp_path / "out.onnx", "--keep-direction")
    np.testing.assert_allclose(ort_run(tmp_path / "out.onnx", {"x": inputs}), expected, atol=1e-5, rtol=0)


def test_keras3_embedding_index_wrap_is_read_only_when_it_is_an_identity(tmp_path):
    """Keras 3 exports where(ids < 0, ids + vocab, ids) before the Gather; a different offset is refused."""
    src = FIXTURES / "quirk_keras3_export.onnx"
    assert lstmconvert.load(src).embedding.vocab_size == 12
    proto = onnx.load(str(src))
    data = proto.graph.input[0].name
    add = next(n for n in proto.graph.node if n.op_type == "Add" and data in n.input)
    offset = next(i for i in add.input if i != data)
    for tensor in proto.graph.initializer:
        if tensor.name == offset:
            assert int(onnx.numpy_helper.to_array(tensor)) == 12
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.array(11, dtype=onnx.numpy_helper.to_array(tensor).dtype), offset))
    onnx.save(proto, str(tmp_path / "shifted.onnx"))
    with pytest.raises(lstmconvert.LstmConvertError, match="cannot be placed"):
        lstmconvert.load(tmp_path / "shifted.onnx")


def test_bidirectional_last_state_sliced_out_of_y_by_hand():
    """cat(y[:, -1, :H], y[:, 0, H:]) is each direction's final state; y[:, -1] alone is refused (bad/)."""
    model = lstmconvert.load(FIXTURES / "quirk_ts_bidirectional_manual_last.onnx")
    assert model.readout == "last" and model.layers[0].bidirectional and model.layers[0].merge == "concat"


def test_dense_head_on_flattened_batch_and_time(tmp_path):
    """Reshape (batch, time, 2H) -> (batch * time, 2H), Gemm, Reshape back: onnxsim's form of a Linear."""
    src = FIXTURES / "handmade_flattened_head.onnx"
    inputs = np.load(FIXTURES / "handmade_flattened_head.ref.npz")["inputs"]
    model = lstmconvert.load(src)
    assert model.batch_first and model.readout == "sequence" and model.head[0].in_features == 8
    convert(src, tmp_path / "out.onnx", "--keep-direction")
    np.testing.assert_allclose(ort_run(tmp_path / "out.onnx", {"x_nt": inputs}), ort_run(src, {"x_nt": inputs}),
                               atol=1e-6, rtol=0)


# -- refusals ------------------------------------------------------------------------------------------
HOSTILE = {
    "parent_escape": "leaves the model's folder",
    "absolute_path": "is an absolute path",
    "symlink_escape": "resolves outside the model's folder",
    "missing_data": "is missing",
    "beyond_end": "which has 100 bytes",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_external_data_is_refused_without_reading_outside(name, capsys):
    path = FIXTURES / "hostile" / f"{name}.onnx"
    with recording_opens() as opened:
        code = main(["inspect", str(path)])
        opened = list(opened)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and HOSTILE[name] in err and "tensor 'W'" in err
    secret = str((FIXTURES / "secret.bin").resolve())
    assert not any(Path(p).resolve() == Path(secret) or p == "/etc/passwd" for p in opened), opened
    assert not any(p.endswith("beyond_end.onnx.data") for p in opened)


BAD = {
    "truncated": "not an ONNX model",
    "not_onnx": "not an ONNX model",
    "conv_between_layers": "Conv node 'conv_between' cannot be placed",
    "leaky_relu": "activation LeakyRelu is not supported",
    "nonzero_initial_h": "initial_h is a non-zero constant",
    "initial_h_input": "initial_h comes from the graph input 'h0'",
    "ambiguous_alpha": "activation_alpha has 3 value(s) but 1 activation(s) take one",
    "two_outputs": "'logits' is not an LSTM state",
    "gru": "no LSTM node (GRU node 'gru': lstmconvert reads LSTMs only)",
    "loop": "Loop node 'while_loop' computes a recurrence step by step",
    "unrolled": "look like a recurrence unrolled step by step",
    # Exporter output (fixtures/make_onnx_fixtures.py, torch_quirk_fixtures).
    "quirk_dynamo_proj_size": "initial_c has hidden size 5 but W and R have 2",
    "quirk_no_params": "exported without its weights",
    "quirk_bidirectional_last_step": "the last time step of a reverse direction's output Y",
    "quirk_mean_pooling": "pooling over time",
}


# Graphs outside embedding -> LSTM stack -> dense head: refused across formats, widened in place in ONNX.
OUTSIDE_NEUTRAL_SHAPE = ("conv_between_layers", "quirk_mean_pooling", "two_outputs")


@pytest.mark.parametrize("name", sorted(BAD))
def test_unsupported_files_are_refused_with_one_line(name, capsys, tmp_path):
    target = "out.pt" if name in OUTSIDE_NEUTRAL_SHAPE else "out.onnx"
    code = main(["convert", str(FIXTURES / "bad" / f"{name}.onnx"), "-o", str(tmp_path / target)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and BAD[name] in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", OUTSIDE_NEUTRAL_SHAPE)
def test_graphs_outside_the_neutral_shape_are_widened_in_place(name, capsys, tmp_path):
    source = FIXTURES / "bad" / f"{name}.onnx"
    assert main(["convert", str(source), "-o", str(tmp_path / "bi.onnx")]) == 0
    assert main(["verify", str(source), str(tmp_path / "bi.onnx")]) == 0, capsys.readouterr().out


def test_projection_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    direction = LSTMDirection(w_ih=rng.standard_normal((16, 3)).astype(np.float32),
                              w_hh=rng.standard_normal((16, 2)).astype(np.float32),
                              w_hr=rng.standard_normal((2, 4)).astype(np.float32))
    model = SequenceModel(layers=[LSTMLayer([direction])])
    with pytest.raises(lstmconvert.LstmConvertError, match="projection"):
        lstmconvert.save(model, tmp_path / "proj.onnx")
    assert not list(tmp_path.iterdir())


# -- opsets, dtypes, external data ---------------------------------------------------------------------
def test_default_opset_and_opset_14_both_run(tmp_path, capsys):
    src = FIXTURES / "torch_bi_tagger_ts.onnx"
    inputs, _ = reference("torch_bi_tagger_ts")
    feed = feed_for(src, inputs, "TN")
    outputs = {}
    for label, extra in (("default", []), ("14", ["--opset", "14"])):
        dst = tmp_path / f"{label}.onnx"
        convert(src, dst, "--keep-direction", *extra)
        proto = onnx.load(str(dst))
        assert proto.opset_import[0].version == (28 if label == "default" else 14)
        onnx.checker.check_model(proto, full_check=True)
        outputs[label] = ort_run(dst, feed)
    np.testing.assert_allclose(outputs["14"], outputs["default"], atol=0, rtol=0)
    assert main(["convert", str(src), "-o", str(tmp_path / "old.onnx"), "--keep-direction", "--opset", "13"]) == 2
    assert "opset 13 is too old" in capsys.readouterr().err


def _small_model(dtype) -> SequenceModel:
    rng = np.random.default_rng(4)
    direction = LSTMDirection(w_ih=rng.uniform(-0.5, 0.5, (16, 3)).astype(dtype),
                              w_hh=rng.uniform(-0.5, 0.5, (16, 4)).astype(dtype),
                              b_ih=rng.uniform(-0.5, 0.5, 16).astype(dtype))
    return SequenceModel(layers=[LSTMLayer([direction])], head=[Dense(rng.uniform(-0.5, 0.5, (2, 4)).astype(dtype))],
                         batch_first=True)


def test_float16_is_written_as_float16_and_runs(tmp_path):
    model32, model16 = _small_model(np.float32), _small_model(np.float16)
    lstmconvert.save(model32, tmp_path / "m32.onnx")
    lstmconvert.save(model16, tmp_path / "m16.onnx")
    types = {t.data_type for t in onnx.load(str(tmp_path / "m16.onnx")).graph.initializer if t.name.startswith(("lstm", "dense"))}
    assert types == {onnx.TensorProto.FLOAT16}
    read = lstmconvert.load(tmp_path / "m16.onnx")
    assert_bits_equal(read.layers[0].directions[0].w_ih, model16.layers[0].directions[0].w_ih, "fp16 w_ih")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    out16 = ort_run(tmp_path / "m16.onnx", {"input": x.astype(np.float16)})
    out32 = ort_run(tmp_path / "m32.onnx", {"input": x.astype(np.float32)})
    assert out16.dtype == np.float16
    np.testing.assert_allclose(out16.astype(np.float32), out32, atol=2e-2)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_dtypes_onnxruntime_cannot_run_are_refused_and_cast_on_request(tmp_path, capsys, dtype):
    """A float64 / bfloat16 LSTM is valid ONNX but onnxruntime has no kernel for it: refused, nothing
    written; --dtype float32 casts explicitly, and the result matches torch's own run of the source."""
    torch = pytest.importorskip("torch")

    torch.manual_seed(3)
    lstm, fc = torch.nn.LSTM(3, 4, batch_first=True), torch.nn.Linear(4, 2)
    torch_dtype = {"float64": torch.float64, "bfloat16": torch.bfloat16}[dtype]
    lstm, fc = lstm.to(torch_dtype), fc.to(torch_dtype)
    src = tmp_path / "src.pt"
    torch.save({**{f"lstm.{k}": v for k, v in lstm.state_dict().items()},
                **{f"fc.{k}": v for k, v in fc.state_dict().items()}}, src)
    out = tmp_path / "out.onnx"
    assert main(["convert", str(src), "-o", str(out), "--batch-first"]) == 2
    err = capsys.readouterr().err
    assert f"onnxruntime has no {dtype} LSTM kernel" in err and "--dtype float32" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]
    assert main(["convert", str(src), "-o", str(out), "--batch-first", "--dtype", "float32"]) == 0
    read = lstmconvert.load(out)
    assert read.dtype == np.float32
    expected_w = lstm.weight_hh_l0.detach().float().numpy()
    assert_bits_equal(read.layers[0].directions[0].w_hh, expected_w, "cast w_hh")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    with torch.no_grad():
        ref = fc(lstm(torch.from_numpy(x).to(torch_dtype))[0]).float().numpy()
    got = ort_run(out, {"input": x.astype(np.float32)})
    tolerance = 1e-5 if dtype == "float64" else 5e-2  # bfloat16 source: its own rounding
    np.testing.assert_allclose(got, ref, atol=tolerance)


def test_large_models_go_to_external_data(tmp_path, monkeypatch):
    """Force the 2 GB threshold down: weights land in '<name>.data' beside the model, read back exact."""
    from lstmconvert.formats.onnx_format import writer

    monkeypatch.setattr(writer, "EXTERNAL_DATA_THRESHOLD", 0)
    src = FIXTURES / "torch_tagger_ts.onnx"
    model = lstmconvert.load(src)
    written = lstmconvert.save(model, tmp_path / "big.onnx")
    assert sorted(p.name for p in written) == ["big.onnx", "big.onnx.data"]
    proto = onnx.load(str(tmp_path / "big.onnx"), load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"big.onnx.data"}
    onnx.checker.check_model(str(tmp_path / "big.onnx"), full_check=True)
    again = lstmconvert.load(tmp_path / "big.onnx")
    for name, array in model.arrays().items():
        assert_bits_equal(again.arrays()[name], array, name)
    inputs, _ = reference("torch_tagger_ts")
    feed = feed_for(src, inputs, "TN")
    np.testing.assert_allclose(ort_run(tmp_path / "big.onnx", feed), ort_run(src, feed), atol=0, rtol=0)


# -- the runner and imports ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["torch_tagger_ts", "torch_classifier_ts", "torch_packed_ts"])
def test_run_feeds_batch_major_inputs_in_the_files_layout(name):
    layout, _ = SOURCE_FIXTURES[name]
    inputs, _ = reference(name)
    path = FIXTURES / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = lstmconvert.run(path, inputs)
    raw = ort_run(path, feed_for(path, inputs, layout))
    if layout == "TN" and raw.ndim == 3:
        raw = np.swapaxes(raw, 0, 1)
    assert_bits_equal(got, raw, "run vs onnxruntime")


def test_onnx_format_imports_no_other_framework():
    code = ("import sys, lstmconvert; from lstmconvert.formats import onnx_format; "
            "m = lstmconvert.load(sys.argv[1]); "
            "bad = [f for f in ('torch', 'tensorflow', 'keras', 'tf_keras') if f in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "torch_tagger_ts.onnx")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
