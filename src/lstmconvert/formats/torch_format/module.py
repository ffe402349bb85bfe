"""``SequenceLSTM``: the nn.Module lstmconvert builds from a neutral model.

``[nn.Embedding] -> LSTM layers -> [nn.Linear head with activations]``, seq-first or batch-first,
readout "sequence" or "last", bidirectional merges concat/sum/ave/mul, projections, masking.

Masking (right padding: token id 0, or a time step whose features all equal ``mask_value``): each
sequence's length is the position of its last non-padding step plus one. The backward direction
starts at each sequence's last real step, like PyTorch packed sequences, Keras masks and ONNX Runtime
``sequence_lens``: the valid prefix of every sequence is reversed with an index gather (packed
sequences cannot be exported), run, and gathered back. Padded steps output 0. Readout "last" takes
the forward state at step ``len - 1`` and the backward state after step 0.

Each direction runs through PyTorch's own LSTM kernel (``torch.lstm``) in eager mode. Under
``torch.export`` that kernel unrolls the time loop and fixes the sequence length, so there the same
cell is written out once and looped with ``scan``, which keeps batch and time dynamic.

State_dict naming is canonical (see ``naming``): a file written with lstmconvert's naming loads with
``SequenceLSTM.from_config(config).load_state_dict(torch.load(path, weights_only=True), strict=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ...model import SequenceModel
from .config import SequenceLSTMConfig, config_from_model
from .naming import canonical_naming, single_module_fits, state_arrays
from .tensors import to_tensor

_HEAD_ACTIVATIONS = {
    "linear": lambda y: y,
    "softmax": lambda y: torch.softmax(y, dim=-1),
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
}


class SequenceLSTM(nn.Module):
    """Embedding -> LSTM stack -> head, computing what the neutral model describes.

    Input: token ids (int64) or features, (T, N[, F]) or (N, T[, F]) with ``batch_first``.
    Output: (T, N, out) / (N, T, out) for readout "sequence", (N, out) for "last".

    Example:
        >>> module = SequenceLSTM.from_checkpoint("tagger_bi.pt")
        >>> logits = module(token_ids)
    """

    def __init__(self, config: SequenceLSTMConfig) -> None:
        super().__init__()
        self.config = config
        dtype = getattr(torch, config.dtype)
        self.single_lstm = single_module_fits(config.layers)
        if config.vocab_size is not None:
            self.embedding = nn.Embedding(config.vocab_size, config.input_size, padding_idx=config.padding_idx, dtype=dtype)
        else:
            self.embedding = None
        if self.single_lstm:
            first = config.layers[0]
            self.lstm = nn.LSTM(first.input_size, first.hidden_size, num_layers=len(config.layers), bias=first.bias,
                                bidirectional=first.bidirectional, proj_size=first.proj_size, dtype=dtype)
        else:
            self.lstm = nn.ModuleList(
                nn.LSTM(layer.input_size, layer.hidden_size, bias=layer.bias, bidirectional=layer.bidirectional,
                        proj_size=layer.proj_size, dtype=dtype)
                for layer in config.layers
            )
        self.head = nn.ModuleList(
            nn.Linear(spec.in_features, spec.out_features, bias=spec.bias, dtype=dtype) for spec in config.head
        )

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Union[SequenceLSTMConfig, dict, str]) -> "SequenceLSTM":
        """Build an untrained module from a config (object, dict, or the JSON stored in our files)."""
        if isinstance(config, str):
            config = json.loads(config)
            config = config.get("config", config)  # the whole stored blob is accepted too
        if isinstance(config, dict):
            config = SequenceLSTMConfig.from_dict(config)
        return cls(config)

    @classmethod
    def from_model(cls, model: SequenceModel) -> "SequenceLSTM":
        """Build the module for a neutral model and load its weights (bit-exact, same dtype)."""
        config = config_from_model(model)
        module = cls(config)
        arrays = state_arrays(model, canonical_naming(config))
        module.load_state_dict({key: to_tensor(a) for key, a in arrays.items()}, strict=True)
        return module.eval()

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path]) -> "SequenceLSTM":
        """Read a PyTorch LSTM checkpoint (any naming lstmconvert reads) into a ready module.

        Reads with this format's own reader (a format does not go through ``api``); as a public entry
        point it names the file in its errors, as ``api.load`` does.
        """
        from ...errors import LstmConvertError
        from ...options import ReadHints
        from .reader import read

        path = Path(path)
        try:
            model = read(path, ReadHints()).validate()
        except LstmConvertError as exc:
            raise exc.at(path)
        return cls.from_model(model)

    # -- computation ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.batch_first:
            x = x.transpose(0, 1)  # work time-major: (T, N[, F])
        lengths = self._lengths(x)
        h = self.embedding(x) if self.embedding is not None else x
        steps = torch.arange(h.shape[0], device=h.device)[:, None]
        valid = steps < lengths[None, :]  # (T, N)
        # t -> len-1-t inside each sequence's valid prefix, t -> t on padding (an involution).
        reverse_index = torch.where(valid, lengths[None, :] - 1 - steps, steps)
        last_index = (lengths - 1).clamp(min=0)[None, :]
        has_steps = (lengths > 0)[:, None]
        last = h
        for k, layer in enumerate(cfg.layers):
            sequences, finals = [], []
            for d in range(2 if layer.bidirectional else 1):
                backward = d == 1 or layer.reverse
                inputs = _gather_time(h, reverse_index) if backward else h
                seq = self._run_direction(inputs, k, d)
                # In processing order, the state after the last real step sits at len-1.
                finals.append(torch.where(has_steps, _gather_time(seq, last_index)[0], torch.zeros_like(seq[0])))
                if backward and not layer.reversed_output:
                    seq = _gather_time(seq, reverse_index)
                sequences.append(seq)
            merged = _merge(sequences, layer.merge)
            h = torch.where(valid[:, :, None], merged, merged.new_zeros(()))
            last = _merge(finals, layer.merge)
        y = last if cfg.readout == "last" else h
        for dense, spec in zip(self.head, cfg.head):
            y = _HEAD_ACTIVATIONS[spec.activation](dense(y))
        if cfg.readout == "sequence" and cfg.batch_first:
            y = y.transpose(0, 1)
        return y

    def _lengths(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) int64: position of each sequence's last non-padding step + 1 (T when unmasked)."""
        steps = x.shape[0]
        if not self.config.masked:
            return torch.full((x.shape[1],), steps, dtype=torch.int64, device=x.device)
        if self.embedding is not None:
            real = x != 0
        else:
            real = (x != self.config.mask_value).any(dim=-1)
        positions = torch.arange(1, steps + 1, device=x.device)[:, None]
        return (real.to(torch.int64) * positions).amax(dim=0)

    def _direction_parameters(self, k: int, d: int) -> list:
        """[w_ih, w_hh, (b_ih, b_hh), (w_hr)] of layer k, direction d, in torch.lstm's order."""
        layer = self.config.layers[k]
        module, index = (self.lstm, k) if self.single_lstm else (self.lstm[k], 0)
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if layer.bias else [])
        names += ["weight_hr"] if layer.proj_size else []
        suffix = "_reverse" if d == 1 else ""
        return [getattr(module, f"{name}_l{index}{suffix}") for name in names]

    def _run_direction(self, x: torch.Tensor, k: int, d: int) -> torch.Tensor:
        """Run one direction of layer k forward in time over (T, N, I); returns (T, N, H_out)."""
        layer = self.config.layers[k]
        params = self._direction_parameters(k, d)
        batch = x.shape[1]
        h0 = x.new_zeros(batch, layer.direction_output_size)
        c0 = x.new_zeros(batch, layer.hidden_size)
        if torch.compiler.is_exporting():
            return _scan_lstm(x, h0, c0, params, layer.bias, layer.proj_size > 0)
        out, _, _ = torch.lstm(x, (h0[None], c0[None]), params, layer.bias, 1, 0.0, False, False, False)
        return out


def _scan_lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, params: list, bias: bool, proj: bool) -> torch.Tensor:
    """The LSTM cell of ``torch.lstm`` (same operation order), looped with ``scan`` for export."""
    from torch._higher_order_ops import scan

    w_ih, w_hh = params[0], params[1]
    b_ih, b_hh = (params[2], params[3]) if bias else (None, None)
    w_hr = params[-1] if proj else None
    x_gates = F.linear(x, w_ih, b_ih)  # the input part of every step at once, as the kernel does

    def step(carry, x_t):
        h, c = carry
        gates = F.linear(h, w_hh, b_hh) + x_t
        i, f, g, o = gates.chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        if w_hr is not None:
            h_next = F.linear(h_next, w_hr)
        return (h_next, c_next), h_next.clone()

    _, outputs = scan(step, (h0, c0), x_gates)
    return outputs


def _gather_time(seq: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``seq[index[t, n], n, :]`` for a (T', N) index into a (T, N, F) sequence."""
    return torch.gather(seq, 0, index[:, :, None].expand(-1, -1, seq.shape[2]))


def _merge(parts: list, mode: str) -> torch.Tensor:
    if len(parts) == 1:
        return parts[0]
    forward, backward = parts
    if mode == "concat":
        return torch.cat([forward, backward], dim=-1)
    if mode == "sum":
        return forward + backward
    if mode == "ave":
        return (forward + backward) / 2
    return forward * backward
