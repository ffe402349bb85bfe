"""The PyTorch format on its own: reading checkpoints, exact round trips, SequenceLSTM semantics, refusals.

Numbers are compared between PyTorch runs only: the user's module (eager nn.LSTM, PackedSequence)
against lstmconvert's files run by torch.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import gzip
import os
import pathlib
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
from torch import nn  # noqa: E402

import lstmconvert
from lstmconvert import LstmConvertError, ReadError
from lstmconvert.errors import OutsideNeutralShapeError
from lstmconvert.formats.torch_format import SequenceLSTM
from lstmconvert.formats.torch_format.config import METADATA_KEY
from lstmconvert.model import Activation, LSTMDirection
from torch_helpers import (
    FIXTURES, Classifier, Tagger, assert_close, features, load_user, numpy_out, padded_tokens, tokens,
)
from factories import same_bits

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
    with pytest.raises(OutsideNeutralShapeError, match="b.weight"):  # the hint picks one; the other is left over
        lstmconvert.load(path, embedding="a")


def test_embedding_and_head_hints(tmp_path):
    state = {"emb.weight": torch.randn(10, 8), **_lstm_state(), "h1.weight": torch.randn(3, 4), "h1.bias": torch.randn(3),
             "h2.weight": torch.randn(5, 4), "h2.bias": torch.randn(5)}
    path = _save(tmp_path, state)
    with pytest.raises(OutsideNeutralShapeError, match=r"h1\.weight.*h2\.weight.*--head"):
        lstmconvert.load(path)
    with pytest.raises(OutsideNeutralShapeError, match="h1.weight"):  # h1 is neither embedding, LSTM nor head
        lstmconvert.load(path, head="h2")


class MLPTagger(nn.Module):
    """Features (N, T, 4) -> nn.LSTM(batch_first) -> Sequential(Linear, ReLU, Dropout, Linear) per step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.head = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.3), nn.Linear(5, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


def _mlp_tagger(seed: int = 0) -> MLPTagger:
    torch.manual_seed(seed)
    return MLPTagger().eval()


def test_multi_layer_head_needs_its_activations(tmp_path):
    """A state_dict does not say what runs between head layers: refused until --head names it."""
    user = _mlp_tagger()
    path = _save(tmp_path, user.state_dict())
    with pytest.raises(ReadError, match=r"head\.0 -> head\.3.*--head head\.0:relu,head\.3"):
        lstmconvert.load(path, batch_first=True)
    with pytest.raises(ReadError, match="head.0:relu"):  # names alone do not say it either
        lstmconvert.load(path, batch_first=True, head="head.0,head.3")
    with pytest.raises(ReadError, match="unknown activation gelu"):
        lstmconvert.load(path, batch_first=True, head="head.0:gelu,head.3")
    hints = {"batch_first": True, "head": "head.0:relu,head.3"}
    model = lstmconvert.load(path, **hints)
    assert [d.activation for d in model.head] == ["relu", "linear"]
    x = features(4, 2, 5)
    assert_close(lstmconvert.run(path, x.numpy(), **hints), numpy_out(user, x))


def test_unrelated_tensors_are_refused_but_step_counters_pass(tmp_path):
    state = {**_lstm_state(), "norm.weight": torch.ones(4), "norm.bias": torch.zeros(4),
             "norm.running_mean": torch.zeros(4), "norm.num_batches_tracked": torch.tensor(3)}
    with pytest.raises(OutsideNeutralShapeError, match="norm.weight, norm.bias, norm.running_mean") as info:
        lstmconvert.load(_save(tmp_path, state))
    assert "num_batches_tracked" not in str(info.value)
    ok = {**_lstm_state(), "bn.num_batches_tracked": torch.tensor(3)}
    assert len(lstmconvert.load(_save(tmp_path, ok, "ok.pt")).layers) == 1


def test_gru_is_not_mistaken_for_an_lstm(tmp_path):
    gru = {f"gru.{k}": v for k, v in nn.GRU(8, 4).state_dict().items()}  # 12 rows: looks like 4*3
    with pytest.raises(ReadError, match="'gru' is an nn.GRU, not an LSTM"):
        lstmconvert.load(_save(tmp_path, gru))


def test_lstms_that_do_not_chain_are_refused(tmp_path):
    state = {**_lstm_state("enc."), **_lstm_state("dec.", input_size=6)}
    with pytest.raises(OutsideNeutralShapeError, match="do not chain"):
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


# -- checkpoints as training scripts write them -----------------------------------------------
class Trap:
    """An object whose unpickling (``__setstate__``) creates ``marker``; lstmconvert must never run it."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


class TrappedMLPTagger(MLPTagger):
    """MLPTagger whose unpickling creates ``marker``: ``torch.save(model)`` of it must be read without that."""

    def __init__(self, marker) -> None:
        super().__init__()
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()
        super().__setstate__(state)


class AttrDict(dict):
    """A config dict with attribute access (items only, as many training scripts define it)."""

    __getattr__ = dict.__getitem__


class EasyDict(dict):
    """A dict subclass that also stores every item as an attribute, so it pickles attributes."""

    def __init__(self, **items) -> None:
        super().__init__(**items)
        self.__dict__.update(items)


@dataclasses.dataclass
class RunConfig:
    hidden: int = 16
    started: datetime.datetime = datetime.datetime(2024, 1, 2, 3, 4, 5)


def _assert_same_state(model, state: dict, prefix: str = "") -> None:
    """The neutral model's arrays equal, bit for bit, the state_dict tensors under their source keys."""
    naming = model.meta["torch"]["naming"]
    assert naming["layers"] and all(layer[0] == f"{prefix}lstm" for layer in naming["layers"])
    written = {}
    for k, layer in enumerate(model.layers):
        for d, direction in enumerate(layer.directions):
            for field, param in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                written[f"{prefix}lstm.{param}_l{k}{'_reverse' if d else ''}"] = getattr(direction, field)
    for j, dense in enumerate(model.head):
        written[f"{naming['head'][j]}.weight"] = dense.weight
        written[f"{naming['head'][j]}.bias"] = dense.bias
    if model.embedding is not None:
        written[f"{naming['embedding']}.weight"] = model.embedding.weight
    assert set(written) == set(state), set(written) ^ set(state)
    for key, array in written.items():
        expected = state[key].detach().contiguous().numpy()
        assert array.dtype == expected.dtype and array.tobytes() == expected.tobytes(), key


def test_training_checkpoint_with_python_objects_is_read_without_running_them(tmp_path):
    """argparse.Namespace, numpy scalars and arrays, paths, dataclasses, dict subclasses: weights_only
    refuses them; lstmconvert stands in for them, runs none of their code, and reads the weights."""
    marker = tmp_path / "marker"
    user = load_user(Tagger, TAGGER)
    checkpoint = {
        "epoch": 7, "state_dict": user.state_dict(), "best_acc": np.float64(0.93), "losses": np.array([0.5, 0.25]),
        "args": argparse.Namespace(lr=0.01, out=pathlib.Path("/runs/1")), "config": RunConfig(),
        "history": collections.defaultdict(list, {"loss": [1.0]}), "extra": AttrDict(seed=3), "trap": Trap(marker),
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError):  # what makes the file hard: PyTorch's restricted load refuses it
        torch.load(path, weights_only=True)
    torch.load(path, weights_only=False)  # the trap works when a file is unpickled normally...
    assert marker.exists()
    marker.unlink()
    model = lstmconvert.load(path)
    assert not marker.exists()  # ...but lstmconvert never ran it
    _assert_same_state(model, user.state_dict())
    path_class = f"pathlib.{type(pathlib.Path()).__name__}"
    assert {"argparse.Namespace", "numpy.dtype", path_class, "collections.defaultdict",
            f"{__name__}.Trap", f"{__name__}.AttrDict", f"{__name__}.RunConfig"} <= set(model.meta["torch"]["not_loaded"])
    x = tokens(5, 6, 2)
    assert_close(lstmconvert.run(path, x.T.numpy()).transpose(1, 0, 2), numpy_out(user, x))


def test_legacy_serialization_with_objects_is_read(tmp_path):
    """The pre-1.6 torch.save format (a pickle stream, not a zip), with a Namespace in it."""
    user = load_user(Tagger, TAGGER)
    path = tmp_path / "legacy.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "model": user.state_dict(), "best": np.float32(0.5)}, path,
               _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    _assert_same_state(lstmconvert.load(path), user.state_dict())


def test_lightning_checkpoint(tmp_path):
    """A PyTorch Lightning .ckpt: the LightningModule's state_dict (keys 'model.lstm...') among loops,
    callbacks, optimizer and scheduler states and hyper-parameters."""
    user = load_user(Tagger, TAGGER)
    optimizer = torch.optim.Adam(user.parameters())
    user(tokens(0, 3, 2)).sum().backward()
    optimizer.step()
    state = {f"model.{k}": v for k, v in user.state_dict().items()}
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0", "state_dict": state,
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.25),
                                                                 "best_model_path": "epoch=2.ckpt"}},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [torch.optim.lr_scheduler.StepLR(optimizer, 10).state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": {"hidden": 16, "layers": [1, 2], "args": argparse.Namespace(lr=1)},
    }
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(checkpoint, path)
    model = lstmconvert.load(path)  # the extension says PyTorch
    assert model.meta["torch"]["container"] == "state_dict"
    _assert_same_state(model, state, prefix="model.")


def test_whole_pickled_module_is_refused_without_running_it(tmp_path):
    """torch.save(model), here inside a training dict: building the model would mean unpickling the
    user's class, which runs code, so the file is refused and the trap in it never fires."""
    marker = tmp_path / "marker"
    user = _mlp_tagger()
    trapped = TrappedMLPTagger(marker).eval()
    trapped.load_state_dict(user.state_dict())
    path = tmp_path / "model.pt"
    torch.save({"model": trapped, "epoch": 2}, path)
    with pytest.raises(ReadError, match=r"whole pickled module .*under 'model'.*Nothing from it was executed"):
        lstmconvert.load(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the trap is live
    assert marker.exists()


def test_scripted_module_gives_layout_and_sequential_head(tmp_path):
    user = _mlp_tagger(1)
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(user), str(path))
    model = lstmconvert.load(path)
    assert model.batch_first and [d.activation for d in model.head] == ["relu", "linear"]
    x = features(7, 2, 4)
    assert_close(lstmconvert.run(path, x.numpy()), numpy_out(user, x))


class MyLSTM(nn.LSTM):
    """A user's subclass of nn.LSTM (pickled under the user's class name)."""


class SubclassTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = MyLSTM(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0])


@pytest.mark.parametrize("wrap", [
    lambda m: nn.DataParallel(m),  # pickles the module under "module"
    lambda m: torch.compile(m),  # pickles itself as OptimizedModule(module, compile context)
    lambda m: m,
])
def test_pickled_wrappers_and_lstm_subclasses_are_refused(tmp_path, wrap):
    torch.manual_seed(2)
    user = SubclassTagger().eval()
    path = tmp_path / "whole.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.compile's imports touch deprecated torch.jit
        torch.save(wrap(user), path)
    with pytest.raises(ReadError, match="whole pickled module"):
        lstmconvert.load(path)
    torch.save(user.state_dict(), tmp_path / "state.pt")  # what the message asks for reads
    assert lstmconvert.load(tmp_path / "state.pt", batch_first=True).batch_first
    x = features(8, 2, 5)
    assert_close(lstmconvert.run(tmp_path / "state.pt", x.numpy(), batch_first=True), numpy_out(user, x))


class GeluHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6)
        self.head = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


class ProjectedFeatures(nn.Module):
    """A bias-less square input projection: in a state_dict it looks like an embedding."""

    def __init__(self, **embedding) -> None:
        super().__init__()
        self.proj = nn.Embedding(4, 4, **embedding) if embedding else nn.Linear(4, 4, bias=False)
        self.lstm = nn.LSTM(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(self.proj(x))[0])


@pytest.mark.parametrize("module, match, hints", [
    (GeluHead, r"'head\.1' \(GELU\) sits in the head", {"head": "head.0:tanh,head.2"}),
    (ProjectedFeatures, "'proj' is a Linear, not an nn.Embedding", {}),
    (lambda: ProjectedFeatures(max_norm=1.0), "max_norm=1.0, which rescales rows", {}),
])
def test_scripted_modules_that_are_not_what_their_state_dict_suggests_are_refused(tmp_path, module, match, hints):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module()), str(path))
    with pytest.raises(ReadError, match=match):
        lstmconvert.load(path)
    torch.save(module().state_dict(), tmp_path / "state.pt")
    lstmconvert.load(tmp_path / "state.pt", **hints)  # the state_dict alone cannot tell


def test_views_non_contiguous_and_tied_tensors_read_bit_exact(tmp_path):
    """Tensors saved as views of one flat storage, transposed (non-contiguous), or tied (one storage
    under two keys, as weight-tied language models save it)."""
    torch.manual_seed(4)
    vocab, width = 12, 8
    lstm = nn.LSTM(width, width)
    tied = torch.randn(vocab, width)
    state = {"encoder.weight": tied, **{f"rnn.{k}": v for k, v in lstm.state_dict().items()},
             "decoder.weight": tied, "decoder.bias": torch.randn(vocab)}
    flat = torch.cat([v.reshape(-1) for k, v in state.items() if k.startswith("rnn.")])
    offset = 0
    for key in [k for k in state if k.startswith("rnn.")]:  # views into one storage
        size = state[key].numel()
        state[key] = flat[offset:offset + size].view(state[key].shape)
        offset += size
    state["rnn.weight_hh_l0"] = state["rnn.weight_hh_l0"].clone().t().contiguous().t()  # same values, transposed strides
    assert not state["rnn.weight_hh_l0"].is_contiguous()
    path = _save(tmp_path, state)
    model = lstmconvert.load(path)
    direction = model.layers[0].directions[0]
    expected = torch.load(path, weights_only=True)
    for array, key in ((direction.w_ih, "rnn.weight_ih_l0"), (direction.w_hh, "rnn.weight_hh_l0"),
                       (direction.b_hh, "rnn.bias_hh_l0"), (model.embedding.weight, "encoder.weight"),
                       (model.head[0].weight, "decoder.weight")):
        assert array.tobytes() == expected[key].contiguous().numpy().tobytes(), key
    model.head[0].weight[0, 0] += 1  # tied in the file, independent once read
    assert model.embedding.weight[0, 0] == tied[0, 0]


def _protocol_4(tmp_path):
    torch.save(_lstm_state(), tmp_path / "p4.pt", pickle_protocol=4)
    return tmp_path / "p4.pt"


def _meta(tmp_path):
    return _save(tmp_path, {k: torch.empty_like(v, device="meta") for k, v in _lstm_state().items()}, "meta.pt")


def _gzipped(tmp_path):
    with gzip.open(tmp_path / "z.pt", "wb") as handle:
        torch.save(_lstm_state(), handle)
    return tmp_path / "z.pt"


def _easydict(tmp_path):
    return _save(tmp_path, {"config": EasyDict(lr=0.1), "model": _lstm_state()}, "easy.pt")


class CallsSystem:
    def __reduce__(self):
        return (os.system, ("exit 3",))


def _numpy_weights(tmp_path):
    return _save(tmp_path, {k: v.numpy() for k, v in _lstm_state().items()}, "np.pt")


def _gru(tmp_path):
    return _save(tmp_path, {f"gru.{k}": v for k, v in nn.GRU(8, 5).state_dict().items()}, "gru.pt")


def _rnn(tmp_path):
    return _save(tmp_path, {f"rnn.{k}": v for k, v in nn.RNN(8, 5).state_dict().items()}, "rnn.pt")


def _cell(tmp_path):
    return _save(tmp_path, {f"cell.{k}": v for k, v in nn.LSTMCell(8, 5).state_dict().items()}, "cell.pt")


def _weight_drop(tmp_path):
    state = _lstm_state("rnns.0.module.")
    state["rnns.0.module.weight_hh_l0_raw"] = state.pop("rnns.0.module.weight_hh_l0")
    return _save(tmp_path, state, "awd.pt")


def _quantized(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.LSTM(4, 4)), {nn.LSTM}, dtype=torch.qint8)
    return _save(tmp_path, quantized.state_dict(), "q.pt")


def _weight_norm(tmp_path):
    torch.manual_seed(0)
    user = Tagger(layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old API, still in users' checkpoints
        user.fc = torch.nn.utils.weight_norm(user.fc)
    return _save(tmp_path, user.state_dict(), "wn.pt")


def _parametrized(tmp_path):
    torch.manual_seed(0)
    user = Tagger(layers=1)
    torch.nn.utils.parametrizations.weight_norm(user.lstm, "weight_hh_l0")
    return _save(tmp_path, user.state_dict(), "param.pt")


@pytest.mark.parametrize("make, match", [
    (_protocol_4, "pickled with protocol 4"),
    (_weight_norm, r"fc\.weight_g/_v are torch\.nn\.utils\.weight_norm's halves"),
    (_parametrized, r"lstm\.parametrizations\.weight_hh_l0\.\* is there instead"),
    (_meta, r"lstm\.weight_ih_l0 is on the 'meta' device"),
    (_gzipped, "gzip-compressed"),
    (_easydict, f"{__name__}.EasyDict, a dict subclass that also pickles attributes"),
    (lambda tmp: _save(tmp, {"model": _lstm_state(), "x": CallsSystem()}, "sys.pt"), r"refers to (posix|nt)\.system"),
    (_numpy_weights, r"LSTM entries \(lstm\.weight_ih_l0.*numpy\.ndarray objects, not torch tensors"),
    (_gru, "'gru' is an nn.GRU, not an LSTM"),
    (_rnn, "'rnn' is an nn.RNN, not an LSTM"),
    (_cell, r"nn\.LSTMCell weights \(cell\.weight_ih\)"),
    (_weight_drop, "weight_hh_l0_raw is there instead"),
    (_quantized, "quantized model"),
    (lambda tmp: _save(tmp, {}, "empty.pt"), "empty dict"),
    (lambda tmp: _save(tmp, [_lstm_state()], "list.pt"), "holds a list"),
    (lambda tmp: _save(tmp, torch.zeros(3), "tensor.pt"), "holds a Tensor"),
])
def test_files_lstmconvert_cannot_read_are_refused_precisely(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises((ReadError, OutsideNeutralShapeError), match=match) as info:
        lstmconvert.load(path)
    assert str(path) in str(info.value)
