"""Uni -> bidirectional conversions of PyTorch models, checked against PyTorch itself.

Reference numbers always come from the user's own module run by torch (the source model, or the
user's widened module loading lstmconvert's file with strict=True, or a PackedSequence run); the
converted side is lstmconvert's file run by torch (load_state_dict, or torch.export.load in a
separate process that never imports lstmconvert).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmconvert
from lstmconvert import LstmConvertError, to_bidirectional
from lstmconvert.formats.torch_format import SequenceLSTM
from torch_helpers import (
    FIXTURES, Classifier, MixedTagger, StackedTagger, Tagger, assert_close, features, load_user, numpy_out,
    padded_tokens, tokens,
)
from factories import same_bits

TAGGER = FIXTURES / "tagger.pt"


def widen(src, dst, **options):
    """load -> to_bidirectional -> save, through the public API; returns the converted model."""
    hints = options.pop("hints", {})
    model = lstmconvert.load(src, **hints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lstmconvert.PreservationWarning)
        warnings.simplefilter("ignore", lstmconvert.UntrainableWarning)  # these tests check inference only
        bi = to_bidirectional(model, **options)
    lstmconvert.save(bi, dst)
    return bi


@pytest.fixture(scope="module")
def source_tagger():
    return load_user(Tagger, TAGGER)


@pytest.mark.parametrize("backward", ["copy", "random", "zeros"])
def test_concat_widened_tagger_loads_strict_and_matches_source(tmp_path, source_tagger, backward):
    out = tmp_path / "tagger_bi.pt"
    widen(TAGGER, out, backward=backward, merge="concat")
    user = load_user(Tagger, out, bidirectional=True)  # the user's own widened class, strict=True
    x = tokens(1, 9, 3)
    assert_close(numpy_out(user, x), numpy_out(source_tagger, x))


def test_forward_weights_reused_bit_for_bit(tmp_path):
    out = tmp_path / "tagger_bi.pt"
    widen(TAGGER, out, backward="copy", merge="concat")
    src = torch.load(TAGGER, weights_only=True)
    new = torch.load(out, weights_only=True)
    for key in ("embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                "lstm.weight_hh_l1", "lstm.bias_ih_l1", "lstm.bias_hh_l1", "fc.bias"):
        assert same_bits(new[key], src[key]), key
    # Consumers of the widened output: the forward half is the old matrix, the backward half zeros.
    for key in ("lstm.weight_ih_l1", "fc.weight"):
        assert same_bits(new[key][:, :16].contiguous(), src[key]), key
        assert torch.count_nonzero(new[key][:, 16:]) == 0, key
    # backward="copy": the reverse direction starts as an exact copy of the forward one.
    assert same_bits(new["lstm.weight_hh_l0_reverse"], src["lstm.weight_hh_l0"])
    assert same_bits(new["lstm.weight_ih_l1_reverse"][:, :16].contiguous(), src["lstm.weight_ih_l1"])


@pytest.mark.parametrize("merge", ["sum", "ave"])
def test_sum_and_ave_with_zero_backward_match_source(tmp_path, source_tagger, merge):
    out = tmp_path / f"tagger_{merge}.pt"
    widen(TAGGER, out, backward="zeros", merge=merge)
    module = SequenceLSTM.from_checkpoint(out)  # nn.LSTM cannot merge by sum between its layers
    assert module.config.layers[0].merge == merge and module.config.layers[0].bidirectional
    x = tokens(2, 7, 2)
    assert_close(numpy_out(module, x), numpy_out(source_tagger, x))


def test_separate_stacked_lstm_modules(tmp_path):
    torch.manual_seed(5)
    source = StackedTagger().eval()
    src = tmp_path / "stacked.pt"
    torch.save(source.state_dict(), src)
    model = lstmconvert.load(src)
    assert [layer.hidden_size for layer in model.layers] == [10, 7]
    out = tmp_path / "stacked_bi.pt"
    widen(src, out, backward="random")
    user = load_user(StackedTagger, out, bidirectional=True)
    x = tokens(3, 6, 4)
    assert_close(numpy_out(user, x), numpy_out(source, x))


def test_batch_first_last_state_classifier(tmp_path):
    source = load_user(Classifier, FIXTURES / "classifier_last.pt")
    out = tmp_path / "classifier_bi.pt"
    widen(FIXTURES / "classifier_last.pt", out, backward="copy", hints={"batch_first": True, "readout": "last"})
    user = load_user(Classifier, out, bidirectional=True)
    x = features(4, 5, 9)
    assert_close(numpy_out(user, x), numpy_out(source, x))


def test_projection_layers(tmp_path):
    source = load_user(Tagger, FIXTURES / "tagger_proj.pt", hidden=12, proj_size=6)
    out = tmp_path / "proj_bi.pt"
    widen(FIXTURES / "tagger_proj.pt", out, backward="random")
    user = load_user(Tagger, out, hidden=12, proj_size=6, bidirectional=True)
    x = tokens(6, 8, 3)
    assert_close(numpy_out(user, x), numpy_out(source, x))


def test_training_checkpoint_with_dataparallel_prefix(tmp_path, source_tagger):
    out = tmp_path / "from_checkpoint_bi.pt"
    widen(FIXTURES / "tagger_checkpoint.pth", out)
    user = load_user(Tagger, out, bidirectional=True)  # plain module names, no "module." prefix
    x = tokens(7, 6, 2)
    assert_close(numpy_out(user, x), numpy_out(source_tagger, x))


def test_bias_free_lstm(tmp_path):
    source = load_user(Tagger, FIXTURES / "tagger_nobias.pt", hidden=8, layers=1, bias=False)
    out = tmp_path / "nobias_bi.pt"
    widen(FIXTURES / "tagger_nobias.pt", out, backward="random")
    assert not any("bias_" in k for k in torch.load(out, weights_only=True) if k.startswith("lstm."))
    user = load_user(Tagger, out, hidden=8, layers=1, bias=False, bidirectional=True)
    x = tokens(8, 5, 3)
    assert_close(numpy_out(user, x), numpy_out(source, x))


def test_float16_stays_float16(tmp_path):
    source = Tagger().half().eval()
    source.load_state_dict(torch.load(FIXTURES / "tagger_fp16.pt", weights_only=True), strict=True)
    out = tmp_path / "fp16_bi.pt"
    widen(FIXTURES / "tagger_fp16.pt", out)
    state = torch.load(out, weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.float16}
    user = Tagger(bidirectional=True).half().eval()
    user.load_state_dict(state, strict=True)
    x = tokens(9, 6, 2)
    # float16 has an 11-bit mantissa; extra zero terms may change the summation blocking.
    np.testing.assert_allclose(numpy_out(user, x).astype(np.float32), numpy_out(source, x).astype(np.float32), atol=2e-3)


def test_torchscript_source(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(FIXTURES / "tagger_script.pt"))
    out = tmp_path / "script_bi.pt"
    widen(FIXTURES / "tagger_script.pt", out)
    user = load_user(Tagger, out, bidirectional=True)
    x = tokens(10, 7, 3)
    assert_close(numpy_out(user, x), numpy_out(scripted, x))


@pytest.mark.parametrize("merge,backward", [("concat", "copy"), ("sum", "zeros")])
def test_a_stack_mixing_bidirectional_and_unidirectional_layers_widens_only_the_latter(tmp_path, merge, backward):
    """The bidirectional layer stays as it is (bit for bit); the unidirectional one above it is widened;
    the result strict-loads into the user's widened module and computes what the source did, in torch
    and in onnxruntime."""
    torch.manual_seed(5)
    src = tmp_path / "mixed.pt"
    torch.save(MixedTagger().state_dict(), src)
    dst = tmp_path / "mixed_bi.pt"
    widen(src, dst, merge=merge, backward=backward)
    source = load_user(MixedTagger, src)
    x = tokens(8, 6, 3)
    if merge == "concat":
        widened = load_user(MixedTagger, dst, widened=True)
        assert_close(numpy_out(widened, x), numpy_out(source, x))
        before, after = source.state_dict(), widened.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("lower."))
    onnx_file = tmp_path / "mixed_bi.onnx"
    lstmconvert.save(lstmconvert.load(dst), onnx_file)
    assert lstmconvert.verify(src, onnx_file).passed


def test_already_bidirectional_source_is_refused(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "bi.pt"
    torch.save(Tagger(bidirectional=True).state_dict(), src)
    model = lstmconvert.load(src)
    assert model.layers[0].bidirectional
    with pytest.raises(LstmConvertError, match="already bidirectional"):
        to_bidirectional(model)


# -- .pt2 programs, run where lstmconvert is not imported -------------------------------------
STANDALONE = r"""
import json, sys
import numpy as np, torch
cases = json.load(open(sys.argv[1]))
for spec in cases.values():
    program = torch.export.load(spec["program"]).module()
    inputs = np.load(spec["inputs"])
    with torch.no_grad():
        outputs = {k: program(torch.from_numpy(inputs[k])).numpy() for k in inputs.files}
    np.savez(spec["outputs"], **outputs)
print(json.dumps({"lstmconvert_imported": sorted(m for m in sys.modules if m.split(".")[0] == "lstmconvert")}))
"""


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """Write three .pt2 conversions, run them all in one fresh interpreter; returns per-case results."""
    root = tmp_path_factory.mktemp("pt2")
    cases, expected = {}, {}

    def add(name, model, batches, reference):
        program = root / f"{name}.pt2"
        lstmconvert.save(model, program)
        inputs = {f"b{i}": x.numpy() for i, x in enumerate(batches)}
        np.savez(root / f"{name}_in.npz", **inputs)
        cases[name] = {"program": str(program), "inputs": str(root / f"{name}_in.npz"),
                       "outputs": str(root / f"{name}_out.npz")}
        expected[name] = {f"b{i}": reference(x) for i, x in enumerate(batches)}

    # 1. Function-preserving widening, seq-first token ids: must compute what the source computed.
    source = load_user(Tagger, TAGGER)
    tagger_bi = to_bidirectional(lstmconvert.load(TAGGER), backward="copy")
    add("tagger", tagger_bi, [tokens(11, 1, 1), tokens(12, 5, 1), tokens(13, 9, 3), tokens(14, 1, 3)],
        lambda x: numpy_out(source, x))

    # 2. Batch-first features, readout last, random backward half that the head really uses
    #    (--no-preserve): must compute what the user's widened module computes from the same weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lstmconvert.PreservationWarning)
        classifier_bi = to_bidirectional(lstmconvert.load(FIXTURES / "classifier_last.pt", batch_first=True, readout="last"),
                                         backward="random", preserve=False, seed=3)
    lstmconvert.save(classifier_bi, root / "classifier_bi.pt")
    user_classifier = load_user(Classifier, root / "classifier_bi.pt", bidirectional=True)
    add("classifier", classifier_bi, [features(15, 1, 1), features(16, 1, 6), features(17, 3, 9)],
        lambda x: numpy_out(user_classifier, x))

    # 3. Masked (right-padded) token ids with a live random backward direction: must match the
    #    user's widened module run on PackedSequences, where the backward pass starts at each length.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lstmconvert.PreservationWarning)
        masked_bi = to_bidirectional(lstmconvert.load(TAGGER).replace(masked=True), backward="random",
                                     preserve=False, seed=4)
    lstmconvert.save(masked_bi, root / "masked_bi.pt")
    user_tagger = load_user(Tagger, root / "masked_bi.pt", bidirectional=True)
    padded = [padded_tokens(18, [9, 5, 1]), padded_tokens(19, [3], steps=5), padded_tokens(20, [4, 7, 2], steps=8),
              tokens(21, 6, 3)]

    def packed(x):
        lengths = torch.tensor([int((x[:, n] != 0).nonzero().max()) + 1 for n in range(x.shape[1])])
        with torch.no_grad():
            return user_tagger.forward_packed(x, lengths).numpy()

    add("masked", masked_bi, padded, packed)

    (root / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-I", "-c", STANDALONE, str(root / "cases.json")], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    actual = {name: dict(np.load(spec["outputs"])) for name, spec in cases.items()}
    return report, actual, expected


def test_pt2_runs_without_lstmconvert(standalone):
    report, _, _ = standalone
    assert report["lstmconvert_imported"] == []


@pytest.mark.parametrize("case", ["tagger", "classifier", "masked"])
def test_pt2_matches_pytorch_reference(standalone, case):
    _, actual, expected = standalone
    assert actual[case].keys() == expected[case].keys()
    for batch in expected[case]:
        assert_close(actual[case][batch], expected[case][batch])
