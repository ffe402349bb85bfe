"""In-place widening of PyTorch state_dicts: the widened file strict-loads into the user's module made
bidirectional (consumers widened) and computes, in torch, what the source module computes."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lstmconvert  # noqa: E402
from lstmconvert.cli import main  # noqa: E402
from lstmconvert.errors import OutsideNeutralShapeError, UnsupportedError  # noqa: E402
from lstmconvert.formats.torch_format import describe_edit, prove_edit  # noqa: E402
from lstmconvert.options import EditRequest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "torch_inplace"
REFERENCE = np.load(FIXTURES / "reference.npz")
VOCAB = 12


# -- the user's modules (as in fixtures/make_torch_inplace_fixtures.py), with a bidirectional switch --
class CRNN(nn.Module):
    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.rnn = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(32 if bidirectional else 16, 2)

    def forward(self, x):
        out, _ = self.rnn(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))
        return self.fc(out)


class AttentionClassifier(nn.Module):
    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        width = 32 if bidirectional else 16
        self.embedding = nn.Embedding(VOCAB, 8)
        self.rnn = nn.LSTM(8, 16, batch_first=True, bidirectional=bidirectional)
        self.attn = nn.Linear(width, 1)
        self.fc = nn.Linear(width, 2)

    def forward(self, tokens):
        out, _ = self.rnn(self.embedding(tokens))
        return self.fc((torch.softmax(self.attn(out), dim=1) * out).sum(dim=1))


class Encoder(nn.Module):
    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.rnn = nn.LSTM(8, 16, num_layers=2, bidirectional=bidirectional)

    def forward(self, src):
        _, (hidden, cell) = self.rnn(self.embedding(src))
        if self.rnn.bidirectional:  # the forward direction's final states: the old h_n, c_n
            hidden = hidden.view(2, 2, hidden.shape[1], 16)[:, 0]
            cell = cell.view(2, 2, cell.shape[1], 16)[:, 0]
        return hidden, cell


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.rnn = nn.LSTM(8, 16, num_layers=2)
        self.fc_out = nn.Linear(16, VOCAB)

    def forward(self, tgt, hidden, cell):
        out, _ = self.rnn(self.embedding(tgt), (hidden, cell))
        return self.fc_out(out)


class Seq2Seq(nn.Module):
    def __init__(self, bidirectional_encoder: bool = False) -> None:
        super().__init__()
        self.encoder = Encoder(bidirectional_encoder)
        self.decoder = Decoder()

    def forward(self, src, tgt_in):
        return self.decoder(tgt_in, *self.encoder(src))


class NormTagger(nn.Module):
    def __init__(self, width: int = 16, bidirectional: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.rnn = nn.LSTM(8, 16, batch_first=True, bidirectional=bidirectional)
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 2)


class Stacked(nn.Module):
    """Two nn.LSTMs, the second reading the first, then a Conv1d over time reading the second."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        d = 2 if bidirectional else 1
        self.first = nn.LSTM(4, 8, bidirectional=bidirectional)
        self.second = nn.LSTM(8 * d, 6, bidirectional=bidirectional)
        self.conv = nn.Conv1d(6 * d, 3, 3)

    def forward(self, x):  # (T, N, 4) -> (N, 3, T - 2)
        out, _ = self.second(self.first(x)[0])
        return self.conv(out.permute(1, 2, 0))


# -- helpers -----------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load_into(module: nn.Module, path: Path, key: str = None) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state[key] if key else state, strict=True)
    return module.eval()


def assert_close(got: torch.Tensor, want, tol: float = 1e-5) -> None:
    want = torch.as_tensor(want)
    assert got.shape == want.shape
    assert torch.max(torch.abs(got - want)).item() <= tol


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


# -- CRNN: Conv1d -> LSTM -> Linear ------------------------------------------------------------
def test_crnn_widened_in_place_strict_loads_and_computes_the_source(tmp_path, capsys):
    src, dst = FIXTURES / "crnn.pt", tmp_path / "crnn_bi.pt"
    code, out, err = run_cli(capsys, "convert", src, "-o", dst, "--lstm", "rnn", "--consumer", "fc",
                             "--backward", "random", "--seed", "3")
    assert code == 0, err
    assert "bidirectional 'rnn'" in out and "consumers widened: 'fc'" in out and "exact" in out
    assert "h_n.view(2, 2, batch, 16)[:, 0]" in out

    source = load_into(CRNN(), src)
    widened = load_into(CRNN(bidirectional=True), dst)
    x = torch.as_tensor(REFERENCE["crnn_x"])
    with torch.no_grad():
        assert_close(source(x), REFERENCE["crnn_y"])
        assert_close(widened(x), source(x))

    before = torch.load(src, weights_only=True)
    after = torch.load(dst, weights_only=True)
    assert list(after) == list(widened.state_dict())  # nn.LSTM's own key order
    assert after._metadata == before._metadata
    for key in ("conv.weight", "conv.bias", "fc.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
                "rnn.bias_hh_l0", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1"):
        assert bits_equal(after[key], before[key]), key
    assert bits_equal(after["fc.weight"][:, :16].contiguous(), before["fc.weight"])
    assert not after["fc.weight"][:, 16:].any() and not after["rnn.weight_ih_l1"][:, 16:].any()
    assert not torch.equal(after["rnn.weight_hh_l0_reverse"], after["rnn.weight_hh_l0"])  # random, not a copy
    passed, lines = prove_edit(src, dst, EditRequest(lstms=("rnn",), consumers=("fc",)))
    assert passed, lines


def test_crnn_is_outside_the_neutral_shape_and_inspect_shows_it_whole(capsys):
    with pytest.raises(OutsideNeutralShapeError) as caught:
        lstmconvert.load(FIXTURES / "crnn.pt")
    assert caught.value.layer == "Conv1d 'conv'"
    code, out, _ = run_cli(capsys, "inspect", FIXTURES / "crnn.pt")
    assert code == 0 and "Conv1d 'conv'" in out and "--lstm rnn" in out and "--consumer fc" in out
    rows = describe_edit(FIXTURES / "crnn.pt", EditRequest(lstms=("rnn",), consumers=("fc",)))
    assert [(r["name"], r["role"]) for r in rows] == [("conv", "through"), ("rnn", "lstm"), ("fc", "consumer")]
    assert "weight 2x16 -> 2x32" in rows[2]["change"]
    code, out, _ = run_cli(capsys, "inspect", FIXTURES / "crnn.pt", "--lstm", "rnn", "--consumer", "fc", "--json")
    import json

    assert [r["role"] for r in json.loads(out)["layers"]] == ["through", "lstm", "consumer"]


def test_proof_fails_when_a_pass_through_tensor_or_a_zero_column_changes(tmp_path):
    src, dst = FIXTURES / "crnn.pt", tmp_path / "crnn_bi.pt"
    lstmconvert.widen_in_place(src, dst, lstm=["rnn"], consumers=["fc"])
    state = torch.load(dst, weights_only=True)
    state["conv.bias"] = state["conv.bias"].clone()
    state["conv.bias"][0] = torch.nextafter(state["conv.bias"][0], torch.tensor(1.0))  # one ulp
    torch.save(state, tmp_path / "tampered.pt")
    passed, lines = prove_edit(src, tmp_path / "tampered.pt", EditRequest())
    assert not passed and any("conv.bias" in line for line in lines)
    state = torch.load(dst, weights_only=True)
    state["fc.weight"][0, 20] = 1e-3
    torch.save(state, tmp_path / "leaky.pt")
    assert not prove_edit(src, tmp_path / "leaky.pt", EditRequest())[0]


# -- attention pooling: two consumers ------------------------------------------------------------
def test_attention_pooling_two_consumers(tmp_path):
    src, dst = FIXTURES / "attention.pt", tmp_path / "attention_bi.pt"
    result = lstmconvert.widen_in_place(src, dst, lstm=["rnn"], consumers=["attn", "fc"])
    assert result.widened == ["rnn"] and result.consumers == ["attn", "fc"]
    assert result.preservation.status == "exact"
    tokens = torch.as_tensor(REFERENCE["attention_tokens"])
    source, widened = load_into(AttentionClassifier(), src), load_into(AttentionClassifier(True), dst)
    with torch.no_grad():
        assert_close(source(tokens), REFERENCE["attention_y"])
        assert_close(widened(tokens), source(tokens))


# -- seq2seq widened at the encoder, saved on a GPU ---------------------------------------------
def test_seq2seq_encoder_from_a_gpu_checkpoint(tmp_path, capsys):
    src, dst = FIXTURES / "seq2seq.pt", tmp_path / "seq2seq_bi.pt"
    if not torch.cuda.is_available():  # the fixture's storages claim cuda:0, as a GPU-saved file's do
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(src, weights_only=True)
    with pytest.raises(OutsideNeutralShapeError, match="do not chain"):
        lstmconvert.load(src)
    code, out, err = run_cli(capsys, "convert", src, "-o", dst, "--lstm", "encoder.rnn")
    assert code == 0, err
    assert "note: 'encoder.rnn' final states: the forward direction's are h_n.view(2, 2, batch, 16)[:, 0]" in out
    assert "forward-half" in out  # no consumer named: the output sequence doubles in width

    source = load_into(Seq2Seq(), src)
    widened = load_into(Seq2Seq(bidirectional_encoder=True), dst)
    src_tokens = torch.as_tensor(REFERENCE["seq2seq_src"])
    tgt_in = torch.as_tensor(REFERENCE["seq2seq_tgt_in"])
    with torch.no_grad():
        want = source(src_tokens, tgt_in)
        assert_close(want, REFERENCE["seq2seq_y"])
        got = widened(src_tokens, tgt_in)
        # the view gives the old h_n, c_n: bit for bit from layer 0; layer 1 also sums over zero columns,
        # which only float rounding sees
        (old_h, old_c), (new_h, new_c) = source.encoder(src_tokens), widened.encoder(src_tokens)
        assert torch.equal(new_h[0], old_h[0]) and torch.equal(new_c[0], old_c[0])
        assert_close(new_h, old_h, tol=1e-6)
        assert_close(got, want, tol=1e-5)
        hidden, cell = widened.encoder.rnn(widened.encoder.embedding(src_tokens))[1]
        naive = widened.decoder(tgt_in, hidden[:2], cell[:2])  # the first two rows are not the forward states
        assert not torch.allclose(naive, want, atol=1e-3)
    assert torch.load(dst, weights_only=True)["decoder.rnn.weight_ih_l0"].device.type == "cpu"


# -- a training checkpoint wrapping the state_dict -------------------------------------------------
def test_checkpoint_wrapper_and_other_entries_kept(tmp_path, capsys):
    model = load_into(CRNN(), FIXTURES / "crnn.pt")
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 5, 4)).sum().backward()
    optimizer.step()
    wrapped = nn.DataParallel(model)  # on the CPU it only adds "module." to every key
    checkpoint = {"epoch": 7, "model_state_dict": wrapped.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                  "best": float("nan"), "args": {"lr": 0.01, "layers": [2, 3]}}
    src, dst = tmp_path / "ckpt.pth", tmp_path / "ckpt_bi.pth"
    torch.save(checkpoint, src)
    code, out, err = run_cli(capsys, "convert", src, "-o", dst, "--lstm", "module.rnn", "--consumer", "fc")
    assert code == 0, err
    assert "optimizer_state_dict" in out and "new optimizer" in out
    after = torch.load(dst, weights_only=True)
    assert list(after) == list(checkpoint) and after["epoch"] == 7 and after["args"] == checkpoint["args"]
    old_state, new_state = checkpoint["optimizer_state_dict"]["state"], after["optimizer_state_dict"]["state"]
    assert all(bits_equal(new_state[k]["exp_avg"], old_state[k]["exp_avg"]) for k in old_state)
    assert all(k.startswith("module.") for k in after["model_state_dict"])
    widened = CRNN(bidirectional=True)
    widened.load_state_dict({k[len("module."):]: v for k, v in after["model_state_dict"].items()}, strict=True)
    x = torch.as_tensor(REFERENCE["crnn_x"])
    with torch.no_grad():
        assert_close(widened(x), model(x))
    assert prove_edit(src, dst, EditRequest(lstms=("rnn",), consumers=("fc",)))[0]


def test_lightning_style_checkpoint(tmp_path):
    state = torch.load(FIXTURES / "attention.pt", weights_only=True)
    checkpoint = {"epoch": 2, "global_step": 40, "state_dict": OrderedDict((f"model.{k}", v) for k, v in state.items()),
                  "loops": {"fit_loop": {"epoch_progress": {"current": 2}}}, "hyper_parameters": {"hidden": 16}}
    src, dst = tmp_path / "last.ckpt", tmp_path / "last_bi.ckpt"
    torch.save(checkpoint, src)
    lstmconvert.widen_in_place(src, dst, lstm=["model.rnn"], consumers=["model.attn", "model.fc"])
    after = torch.load(dst, weights_only=True)
    assert list(after) == list(checkpoint) and after["loops"] == checkpoint["loops"]
    widened = AttentionClassifier(bidirectional=True)
    widened.load_state_dict({k[len("model."):]: v for k, v in after["state_dict"].items()}, strict=True)
    tokens = torch.as_tensor(REFERENCE["attention_tokens"])
    with torch.no_grad():
        assert_close(widened.eval()(tokens), REFERENCE["attention_y"])


# -- Conv1d and LSTM consumers, two widened LSTMs ---------------------------------------------------
def test_lstm_reading_lstm_and_conv1d_consumer(tmp_path):
    torch.manual_seed(0)
    source = Stacked().eval()
    src, dst = tmp_path / "stacked.pt", tmp_path / "stacked_bi.pt"
    torch.save(source.state_dict(), src)
    lstmconvert.widen_in_place(src, dst, lstm=["first", "second"], consumers=["second", "conv"], backward="random")
    widened = load_into(Stacked(bidirectional=True), dst)
    x = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(widened(x), source(x))
    assert prove_edit(src, dst, EditRequest(lstms=("first", "second"), consumers=("second", "conv")))[0]


# -- refusals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    ((), ["--lstm PREFIX", "'rnn' (2 layers, input 8, hidden 16)"]),
    (("--lstm", "conv"), ["--lstm conv", "Conv1d", "LSTM prefixes found: 'rnn'"]),
    (("--lstm", "rnn", "--consumer", "head"), ["--consumer head", "no module", "'fc' (Linear)"]),
    (("--lstm", "rnn", "--consumer", "conv"), ["--consumer conv", "takes 4 input features", "16 wide"]),
    (("--lstm", "rnn", "--consumer", "fc", "--merge", "sum"), ["--merge sum", "concatenates"]),
    (("--lstm", "rnn", "--consumer", "fc", "--batch-first"), ["--batch-first does not apply"]),
])
def test_crnn_refusals(tmp_path, capsys, args, words):
    dst = tmp_path / "out.pt"
    code, out, err = run_cli(capsys, "convert", FIXTURES / "crnn.pt", "-o", dst, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert str(FIXTURES / "crnn.pt") in err and all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


def test_cross_format_request_is_refused(tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", FIXTURES / "crnn.pt", "-o", tmp_path / "crnn.onnx")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "holds Conv1d 'conv'; widen it in its own format (.pt)" in err and "or convert the LSTM stack alone with --lstm" in err
    code, out, err = run_cli(capsys, "convert", FIXTURES / "crnn.pt", "-o", tmp_path / "crnn.onnx", "--lstm", "fc")
    assert code == 2 and out == "" and "--lstm fc: no nn.LSTM" in err and "'rnn'" in err
    assert list(tmp_path.iterdir()) == []


def test_the_lstm_stack_alone_goes_to_another_format(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    dst = tmp_path / "rnn_bi.onnx"
    code, _, err = run_cli(capsys, "convert", FIXTURES / "crnn.pt", "-o", dst, "--lstm", "rnn", "--batch-first")
    assert code == 0, err
    source = load_into(CRNN(), FIXTURES / "crnn.pt")
    with torch.no_grad():
        x = torch.as_tensor(REFERENCE["crnn_x"])
        features = torch.relu(source.conv(x.transpose(1, 2))).transpose(1, 2)
        want = source.rnn(features)[0]
    got = lstmconvert.run(dst, features.numpy())  # onnxruntime
    assert got.shape == (4, 10, 32)
    assert_close(torch.as_tensor(got[..., :16]), want)  # the forward half is the source's LSTM output


def test_layernorm_consumer_refused_unless_no_preserve(tmp_path, capsys):
    src, dst = FIXTURES / "layernorm.pt", tmp_path / "norm_bi.pt"
    code, out, err = run_cli(capsys, "convert", src, "-o", dst, "--lstm", "rnn", "--consumer", "norm")
    assert code == 2 and out == "" and "'norm' looks like a LayerNorm" in err and "--no-preserve" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(lstmconvert.PreservationWarning, match="LayerNorm"):
        result = lstmconvert.widen_in_place(src, dst, lstm=["rnn"], consumers=["norm", "fc"], preserve=False)
    assert result.preservation.status == "none"
    load_into(NormTagger(width=32, bidirectional=True), dst)  # strict load: every shape widened
    assert not prove_edit(src, dst, EditRequest())[0]  # random columns and a widened norm: nothing to prove


def test_torchscript_archives_are_not_edited(tmp_path):
    script = Path(__file__).resolve().parent.parent / "fixtures" / "torch" / "tagger_script.pt"
    with pytest.raises(UnsupportedError, match="TorchScript"):
        lstmconvert.widen_in_place(script, tmp_path / "out.pt", lstm=["lstm"], consumers=["fc"])
    with pytest.raises(UnsupportedError, match="not a torch.export program"):
        lstmconvert.widen_in_place(FIXTURES / "crnn.pt", tmp_path / "out.pt2", lstm=["rnn"], consumers=["fc"])
    assert list(tmp_path.iterdir()) == []


def test_state_dict_order_kept_for_a_pure_stack(tmp_path):
    src = Path(__file__).resolve().parent.parent / "fixtures" / "torch" / "tagger.pt"
    dst = tmp_path / "tagger_bi.pt"
    lstmconvert.widen_in_place(src, dst, lstm=["lstm"], consumers=["fc"])
    via_convert = tmp_path / "tagger_convert.pt"
    lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(src)), via_convert)
    edited, converted = torch.load(dst, weights_only=True), torch.load(via_convert, weights_only=True)
    assert list(edited) == list(converted)
    assert all(bits_equal(edited[k], converted[k]) for k in edited)  # same widening rule, same tensors
    assert isinstance(edited, OrderedDict)


def test_projection_lstm_and_bfloat16_keep_their_shapes_and_dtypes(tmp_path):
    from torch_helpers import Tagger, load_user, tokens

    src, dst = Path(__file__).resolve().parent.parent / "fixtures" / "torch" / "tagger_proj.pt", tmp_path / "proj_bi.pt"
    lstmconvert.widen_in_place(src, dst, lstm=["lstm"], consumers=["fc"], backward="random")
    source = load_user(Tagger, src, hidden=12, proj_size=6)
    widened = load_user(Tagger, dst, hidden=12, proj_size=6, bidirectional=True)
    with torch.no_grad():
        assert_close(widened(tokens(0, 7, 3)), source(tokens(0, 7, 3)))

    state = {k: v.to(torch.bfloat16) for k, v in torch.load(FIXTURES / "crnn.pt", weights_only=True).items()}
    torch.save(state, tmp_path / "crnn_bf16.pt")
    lstmconvert.widen_in_place(tmp_path / "crnn_bf16.pt", tmp_path / "crnn_bf16_bi.pt", lstm=["rnn"], consumers=["fc"])
    after = torch.load(tmp_path / "crnn_bf16_bi.pt", weights_only=True)
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    assert prove_edit(tmp_path / "crnn_bf16.pt", tmp_path / "crnn_bf16_bi.pt", EditRequest())[0]


def test_a_bare_lstm_and_a_checkpoint_with_objects_it_cannot_write_back(tmp_path, capsys):
    import argparse

    torch.manual_seed(0)
    torch.save(nn.LSTM(3, 4).state_dict(), tmp_path / "bare.pt")
    result = lstmconvert.widen_in_place(tmp_path / "bare.pt", tmp_path / "bare_bi.pt", lstm=["<root>"])
    assert result.widened == [""] and result.preservation.status == "forward-half"
    nn.LSTM(3, 4, bidirectional=True).load_state_dict(torch.load(tmp_path / "bare_bi.pt", weights_only=True))

    src = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "model": torch.load(FIXTURES / "crnn.pt", weights_only=True)}, src)
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "args_bi.pt", "--lstm", "rnn", "--consumer", "fc")
    assert code == 2 and out == "" and "argparse.Namespace" in err and "write them back" in err
    assert not (tmp_path / "args_bi.pt").exists()


def test_a_head_that_can_chain_stays_a_pure_stack_question(tmp_path):
    """Linear(W, W) -> Linear(W, n) both take the LSTM's width: --head settles it, nothing is widened in place."""
    torch.manual_seed(0)
    lstm, fc1, fc2 = nn.LSTM(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)
    state = {f"{name}.{k}": v for name, module in (("lstm", lstm), ("fc1", fc1), ("fc2", fc2))
             for k, v in module.state_dict().items()}
    torch.save(state, tmp_path / "mlp.pt")
    with pytest.raises(lstmconvert.ReadError, match="--head") as caught:
        lstmconvert.load(tmp_path / "mlp.pt")
    assert not isinstance(caught.value, OutsideNeutralShapeError)
    assert len(lstmconvert.load(tmp_path / "mlp.pt", head="fc1:relu,fc2").head) == 2
