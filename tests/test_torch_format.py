"""The PyTorch format on its own: reading checkpoints, exact round trips, SequenceLSTM semantics, refusals.

Numbers are compared between PyTorch runs only: the user's module (eager nn.LSTM, PackedSequence)
against lstmconvert's files run by torch.
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest
import torch
from torch import nn

import lstmconvert
from lstmconvert import LstmConvertError, ReadError
from lstmconvert.formats.torch_format import SequenceLSTM
from lstmconvert.formats.torch_format.config import METADATA_KEY
from lstmconvert.model import Activation, LSTMDirection
from torch_helpers import (
    FIXTURES, Classifier, Tagger, assert_close, features, load_user, numpy_out, padded_tokens, same_bits, tokens,
)

TAGGER = FIXTURES / "tagger.pt"


# -- reading -----------------------------------------------------------------------------------
def test_reads_user_tagger_structure():
    model = lstmconvert.load(TAGGER)
    assert model.input_kind == "tokens" and model.embedding.weight.shape == (12, 8)
    assert [(layer.input_size, layer.hidden_size, layer.bidirectional) for layer in model.layers] == [(8, 16, False), (16, 16, False)]
    assert [(d.in_features, d.out_features, d.activation) for d in model.head] == [(16, 2, "linear")]
    assert (model.batch_first, model.readout, model.masked) == (False, "sequence", False)
    assert model.meta["torch"]["naming"] == {"embedding": "embed", "layers": [["lstm", 0], ["lstm", 1]], "head": ["fc"]}


def _state_bits_equal(model, state: dict) -> None:
    """Every array of the neutral model equals, bit for bit, the tensor torch.load gives for its key."""
    naming = model.meta["torch"]["naming"]
    pairs = {"embedding.weight": f"{naming['embedding']}.weight", "head.0.weight": "fc.weight", "head.0.bias": "fc.bias"}
    for k in range(len(model.layers)):
        for field, param in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            pairs[f"layers.{k}.forward.{field}"] = f"lstm.{param}_l{k}"
    arrays = model.arrays()
    for ours, theirs in pairs.items():
        array = arrays[ours]
        tensor = state[theirs]
        if array.dtype == ml_dtypes.bfloat16:
            assert torch.equal(torch.from_numpy(array.view(np.int16).copy()), tensor.view(torch.int16)), ours
        else:
            assert array.dtype == tensor.numpy().dtype and array.tobytes() == tensor.numpy().tobytes(), ours


@pytest.mark.parametrize("name", ["tagger.pt", "tagger_fp16.pt", "tagger_bf16.pt"])
def test_weights_read_bit_exact_with_dtype(name):
    state = torch.load(FIXTURES / name, weights_only=True)
    _state_bits_equal(lstmconvert.load(FIXTURES / name), state)


def test_checkpoint_dict_and_torchscript_hold_the_same_weights():
    state = torch.load(TAGGER, weights_only=True)
    wrapped = lstmconvert.load(FIXTURES / "tagger_checkpoint.pth")
    assert wrapped.meta["torch"]["container"] == "model_state_dict"
    assert wrapped.meta["torch"]["stripped_prefix"] == "module."
    _state_bits_equal(wrapped, state)
    scripted = lstmconvert.load(FIXTURES / "tagger_script.pt")
    assert scripted.meta["torch"]["kind"] == "torchscript"
    _state_bits_equal(scripted, state)


def test_compiled_module_prefix_and_nested_wrapper(tmp_path):
    state = torch.load(TAGGER, weights_only=True)
    path = tmp_path / "compiled.pt"
    torch.save({"run": {"weights": {f"_orig_mod.{k}": v for k, v in state.items()}}, "step": 3}, path)
    model = lstmconvert.load(path)
    assert model.meta["torch"]["stripped_prefix"] == "_orig_mod."
    _state_bits_equal(model, state)


def test_run_state_dict_matches_user_module():
    source = load_user(Tagger, TAGGER)
    x = tokens(0, 7, 3)
    out = lstmconvert.run(TAGGER, x.T.numpy())  # batch-major in and out
    assert_close(out.transpose(1, 0, 2), numpy_out(source, x))


def test_run_classifier_with_layout_hints():
    source = load_user(Classifier, FIXTURES / "classifier_last.pt")
    x = features(1, 3, 8)
    out = lstmconvert.run(FIXTURES / "classifier_last.pt", x.numpy(), batch_first=True, readout="last")
    assert_close(out, numpy_out(source, x))


# -- exact round trips -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tagger.pt", "tagger_fp16.pt", "tagger_bf16.pt", "tagger_proj.pt",
                                  "tagger_nobias.pt", "tagger_checkpoint.pth"])
def test_keep_direction_round_trip_is_bit_exact(tmp_path, name):
    out = tmp_path / "copy.pt"
    lstmconvert.save(lstmconvert.load(FIXTURES / name), out)
    source = torch.load(FIXTURES / name, weights_only=True)
    if "model_state_dict" in source:
        source = {k.removeprefix("module."): v for k, v in source["model_state_dict"].items()}
    written = torch.load(out, weights_only=True)
    assert list(written) == list(source)
    for key in source:
        assert same_bits(written[key], source[key]), key


def test_our_file_remembers_layout_without_hints(tmp_path):
    out = tmp_path / "classifier.pt"
    lstmconvert.save(lstmconvert.load(FIXTURES / "classifier_last.pt", batch_first=True, readout="last"), out)
    state = torch.load(out, weights_only=True)
    assert METADATA_KEY in state._metadata
    load_user(Classifier, out)  # the stored config does not disturb a strict load
    again = lstmconvert.load(out)  # no hints this time: the file says batch-first, readout last
    assert (again.batch_first, again.readout) == (True, "last")
    x = features(2, 2, 5)
    assert_close(lstmconvert.run(out, x.numpy()), numpy_out(load_user(Classifier, FIXTURES / "classifier_last.pt"), x))


def test_canonical_file_loads_into_sequence_lstm_from_config(tmp_path):
    """A model from elsewhere (no PyTorch names) gets canonical keys that SequenceLSTM loads strictly."""
    model = lstmconvert.load(FIXTURES / "tagger_nobias.pt")
    model.meta.pop("torch")
    out = tmp_path / "canonical.pt"
    lstmconvert.save(model, out)
    state = torch.load(out, weights_only=True)
    assert list(state) == ["embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.0.weight", "head.0.bias"]
    module = SequenceLSTM.from_config(state._metadata[METADATA_KEY]["config"])
    module.load_state_dict(state, strict=True)
    source = load_user(Tagger, FIXTURES / "tagger_nobias.pt", hidden=8, layers=1, bias=False)
    x = tokens(3, 6, 2)
    assert_close(numpy_out(module.eval(), x), numpy_out(source, x))


def test_pt2_reads_back_exactly(tmp_path):
    model = lstmconvert.load(FIXTURES / "tagger_nobias.pt", batch_first=True)
    out = tmp_path / "nobias.pt2"
    lstmconvert.save(model, out)
    again = lstmconvert.load(out)
    assert again.meta["torch"]["kind"] == "export" and again.batch_first
    for key, array in model.arrays().items():
        assert array.tobytes() == again.arrays()[key].tobytes(), key
    source = load_user(Tagger, FIXTURES / "tagger_nobias.pt", hidden=8, layers=1, bias=False)
    x = tokens(4, 5, 3)
    # batch-first program: run() feeds (N, T) straight through torch.export.load(...).module()
    assert_close(lstmconvert.run(out, x.T.numpy()), numpy_out(source, x).transpose(1, 0, 2))


# -- SequenceLSTM semantics against PyTorch's own packed sequences ----------------------------
@pytest.fixture(scope="module")
def masked_pair(tmp_path_factory):
    """A masked, widened tagger with a live backward half, and the user's module with the same weights."""
    out = tmp_path_factory.mktemp("masked") / "masked_bi.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lstmconvert.PreservationWarning)
        model = lstmconvert.to_bidirectional(lstmconvert.load(TAGGER).replace(masked=True), backward="random",
                                             preserve=False, seed=7)
    lstmconvert.save(model, out)
    return out, load_user(Tagger, out, bidirectional=True)


def test_masked_sequence_output_matches_packed_sequences(masked_pair):
    out, user = masked_pair
    lengths = [6, 2, 4, 1]
    x = padded_tokens(5, lengths, steps=7)
    with torch.no_grad():
        expected = user.forward_packed(x, torch.tensor(lengths)).numpy()
    assert_close(lstmconvert.run(out, x.T.numpy()).transpose(1, 0, 2), expected)


def test_masked_last_state_matches_packed_h_n(masked_pair):
    out, user = masked_pair
    model = lstmconvert.load(out, readout="last")
    module = SequenceLSTM.from_model(model.replace(head=[]))
    lengths = [5, 3, 1]
    x = padded_tokens(6, lengths, steps=6)
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(user.embed(x), torch.tensor(lengths), enforce_sorted=False)
        _, (h_n, _) = user.lstm(packed)
        expected = torch.cat([h_n[-2], h_n[-1]], dim=-1).numpy()  # last layer: forward, backward
        assert_close(module(x).numpy(), expected)


def test_features_mask_value_and_reverse_only_layer(tmp_path):
    """A reverse-only layer (Keras go_backwards) over masked features equals nn.LSTM's reverse half."""
    torch.manual_seed(8)
    lstm = nn.LSTM(4, 5, bidirectional=True).eval()
    model = lstmconvert.load(_save(tmp_path, lstm.state_dict()))
    reverse = model.layers[0].directions[1]
    only_reverse = model.layers[0].__class__(directions=[reverse], reverse=True)
    model = model.replace(layers=[only_reverse], masked=True, mask_value=-1.0)
    module = SequenceLSTM.from_model(model)
    lengths = [4, 2]
    x = torch.randn(6, 2, 4)
    for n, length in enumerate(lengths):
        x[length:, n] = -1.0
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], total_length=6)
        assert_close(module(x).numpy(), out[:, :, 5:].numpy())


# -- discovery and refusals --------------------------------------------------------------------
def _save(tmp_path, state: dict, name: str = "model.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def _lstm_state(prefix: str = "lstm.", input_size: int = 8, hidden: int = 4) -> dict:
    torch.manual_seed(0)
    return {prefix + k: v for k, v in nn.LSTM(input_size, hidden).state_dict().items()}


def test_ambiguous_embedding_needs_a_hint(tmp_path):
    state = {"a.weight": torch.randn(10, 8), "b.weight": torch.randn(20, 8), **_lstm_state()}
    path = _save(tmp_path, state)
    with pytest.raises(ReadError, match=r"a\.weight.*b\.weight.*--embedding"):
        lstmconvert.load(path)
    with pytest.raises(ReadError, match="b.weight"):  # the hint picks one; the other is left over
        lstmconvert.load(path, embedding="a")


def test_embedding_and_head_hints(tmp_path):
    state = {"emb.weight": torch.randn(10, 8), **_lstm_state(), "h1.weight": torch.randn(3, 4), "h1.bias": torch.randn(3),
             "h2.weight": torch.randn(5, 4), "h2.bias": torch.randn(5)}
    path = _save(tmp_path, state)
    with pytest.raises(ReadError, match=r"h1\.weight.*h2\.weight.*--head"):
        lstmconvert.load(path)
    with pytest.raises(ReadError, match="h1.weight"):  # h1 is neither embedding, LSTM nor head
        lstmconvert.load(path, head="h2")


def test_multi_layer_head_is_read_with_a_warning(tmp_path):
    state = {**_lstm_state(), "mlp.0.weight": torch.randn(6, 4), "mlp.0.bias": torch.randn(6),
             "mlp.2.weight": torch.randn(3, 6), "mlp.2.bias": torch.randn(3)}
    with pytest.warns(UserWarning, match="does not record activations"):
        model = lstmconvert.load(_save(tmp_path, state))
    assert [d.out_features for d in model.head] == [6, 3] and model.input_kind == "features"


def test_unrelated_tensors_are_refused_but_step_counters_pass(tmp_path):
    state = {**_lstm_state(), "norm.weight": torch.ones(4), "norm.bias": torch.zeros(4),
             "norm.running_mean": torch.zeros(4), "norm.num_batches_tracked": torch.tensor(3)}
    with pytest.raises(ReadError, match="norm.weight, norm.bias, norm.running_mean") as info:
        lstmconvert.load(_save(tmp_path, state))
    assert "num_batches_tracked" not in str(info.value)
    ok = {**_lstm_state(), "bn.num_batches_tracked": torch.tensor(3)}
    assert len(lstmconvert.load(_save(tmp_path, ok, "ok.pt")).layers) == 1


def test_gru_is_not_mistaken_for_an_lstm(tmp_path):
    gru = {f"gru.{k}": v for k, v in nn.GRU(8, 4).state_dict().items()}  # 12 rows: looks like 4*3
    with pytest.raises(ReadError, match="is it an LSTM"):
        lstmconvert.load(_save(tmp_path, gru))


def test_lstms_that_do_not_chain_are_refused(tmp_path):
    state = {**_lstm_state("enc."), **_lstm_state("dec.", input_size=6)}
    with pytest.raises(ReadError, match="do not chain"):
        lstmconvert.load(_save(tmp_path, state))


@pytest.mark.parametrize("change, match", [
    (lambda d: setattr(d, "activations", (Activation("hard_sigmoid", 0.2, 0.5),) + d.activations[1:]), "sigmoid/tanh/tanh"),
    (lambda d: setattr(d, "peephole", np.zeros(3 * d.hidden_size, dtype=d.w_ih.dtype)), "peephole"),
])
def test_writer_refuses_what_nn_lstm_cannot_compute(tmp_path, change, match):
    model = lstmconvert.load(TAGGER)
    direction: LSTMDirection = model.layers[1].directions[0]
    change(direction)
    for name in ("x.pt", "x.pt2"):
        with pytest.raises(LstmConvertError, match=match):
            lstmconvert.save(model, tmp_path / name)
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no staging folder left


def test_writer_refuses_clip(tmp_path):
    model = lstmconvert.load(TAGGER)
    model.layers[0].clip = 3.0
    with pytest.raises(LstmConvertError, match="clip"):
        lstmconvert.save(model, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []
