"""``edit``: widen named nn.LSTMs inside a PyTorch state_dict or training checkpoint of any shape.

The file is loaded with ``torch.load(weights_only=True, map_location="cpu")`` (checkpoints saved on a
GPU load too) and written back with ``torch.save`` as the same object: the wrapper dict and its other
entries (epoch, optimizer state, hyper-parameters), the state_dict's ``_metadata`` and every tensor
that is neither a widened LSTM nor a named consumer stay as they were, same objects, same key order.
Each widened ``nn.LSTM`` gains ``*_reverse`` tensors after each layer's forward ones (nn.LSTM's own
order), its layers after the first read ``[forward | backward]`` through zero columns, and each
consumer gets zero weights on the backward half (``widening``'s rule), so the user's module with
``bidirectional=True`` and the consumers widened loads the result with ``strict=True``.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ...convert import Preservation, PreservationWarning, UntrainableWarning
from ...errors import UnsupportedError
from ...model import LSTMDirection
from ...options import EditRequest, EditResult
from ...widening import Initialiser, backward_direction, widen_consumer
from .edit_plan import Plan, open_source, plan
from .naming import PARAM_NAMES, lstm_key
from .tensors import tensor_view, to_numpy
from .writer import PROGRAM_SUFFIX

# Entries of a checkpoint that hold an optimizer's per-parameter state (their shapes are the old ones).
OPTIMIZER_HINTS = ("optimizer", "optim")


def edit(src: Path, dst: Path, request: EditRequest) -> EditResult:
    """Write ``dst``: ``src`` with ``request.lstms`` bidirectional and ``request.consumers`` widened."""
    if dst.suffix.lower() == PROGRAM_SUFFIX:
        raise UnsupportedError(f"in-place widening writes a torch.save state_dict, not a torch.export program "
                               f"({PROGRAM_SUFFIX}); give the output a .pt or .pth name")
    the_plan = plan(open_source(src), request)
    for problem in the_plan.warnings:
        warnings.warn(f"the widened model is not function-preserving: {problem}; widened anyway (--no-preserve)",
                      PreservationWarning, stacklevel=2)
    if request.backward == "zeros" and request.preserve:
        warnings.warn("--backward zeros with --merge concat gives a backward direction that never trains (its output "
                      "and the weights reading it are all zero, so their gradients are exactly 0); use --backward "
                      "copy or random to fine-tune", UntrainableWarning, stacklevel=2)
    groups, replaced = widened_tensors(the_plan)
    torch.save(rebuilt(the_plan, groups, replaced), dst)
    return EditResult(
        widened=[m.prefix for m in the_plan.lstms],
        consumers=[c.prefix for c in the_plan.consumers],
        preservation=preservation_of(the_plan),
        notes=notes_for(the_plan),
    )


def widened_tensors(the_plan: Plan) -> tuple:
    """({LSTM prefix: ordered {key: tensor} of all its parameters}, {consumer key: new tensor})."""
    request, tensors = the_plan.request, the_plan.source.tensors
    init = Initialiser(request.seed, style="torch")
    inputs = {c.prefix: c for c in the_plan.consumers}
    groups = {}
    for module in sorted(the_plan.lstms, key=lambda m: list(the_plan.modules).index(m.prefix)):
        consumer = inputs.pop(module.prefix, None)  # a widened LSTM that also reads another widened one
        groups[module.prefix] = _widened_lstm(module, tensors, request, init, reads_widened=consumer is not None)
    replaced = {}
    for consumer in inputs.values():
        for change in consumer.changes:
            array = to_numpy(tensors[change.key], change.key, exclusive=True)  # a view, never written to
            if change.fill is not None:  # a normalisation's parameter, widened only with --no-preserve
                new = np.concatenate([array, np.full_like(array, change.fill)])
            else:
                new = widen_consumer(array, merge="concat", preserve=request.preserve, init=init, axis=change.axis,
                                     fan_in_rows=change.fan_in_rows)
            replaced[change.key] = tensor_view(new)
    return groups, replaced


def _widened_lstm(module, tensors: dict, request: EditRequest, init: Initialiser, reads_widened: bool) -> OrderedDict:
    """Every parameter of the bidirectional nn.LSTM, in the order its state_dict() lists them."""
    out = OrderedDict()
    for layer in range(module.lstm.num_layers):
        keys = {name: lstm_key(module.prefix, param, layer, False) for name, param in PARAM_NAMES.items()}
        keys = {name: key for name, key in keys.items() if key in tensors}
        arrays = {name: to_numpy(tensors[key], key, exclusive=True) for name, key in keys.items()}  # views
        widened_input = layer > 0 or reads_widened
        if widened_input:  # reads [forward | backward] of the layer (or LSTM) before it
            arrays["w_ih"] = widen_consumer(arrays["w_ih"], merge="concat", preserve=request.preserve, init=init,
                                            fan_in_rows=True)
        forward = LSTMDirection(**arrays)
        backward = backward_direction(forward, request.backward, init)
        for name, key in keys.items():
            out[key] = tensor_view(arrays[name]) if name == "w_ih" and widened_input else tensors[key]
        for name in keys:  # a copied direction shares the forward memory here; torch.save writes it twice
            out[lstm_key(module.prefix, PARAM_NAMES[name], layer, True)] = tensor_view(getattr(backward, name))
    return out


def rebuilt(the_plan: Plan, groups: dict, replaced: dict) -> object:
    """The loaded object with its state_dict replaced by the widened one, everything else untouched."""
    source = the_plan.source
    state, stripped = source.state, source.stripped
    owner = {key: prefix for prefix in groups for key in the_plan.modules[prefix].keys}
    pending = dict(groups)
    new_state = type(state)() if type(state) in (dict, OrderedDict) else OrderedDict()
    for raw_key, value in state.items():
        key = raw_key[len(stripped):] if isinstance(raw_key, str) and raw_key.startswith(stripped) else raw_key
        prefix = owner.get(key)
        if prefix is not None:
            if prefix in pending:  # the whole widened LSTM at the place of its first key
                for new_key, tensor in pending.pop(prefix).items():
                    new_state[stripped + new_key] = tensor
            continue
        new_state[raw_key] = replaced.get(key, value)
    if hasattr(state, "_metadata"):
        new_state._metadata = state._metadata
    if not source.where:
        return new_state
    parent = source.obj
    for key in source.where[:-1]:
        parent = parent[key]
    parent[source.where[-1]] = new_state  # same key, same place in the wrapper
    return source.obj


def preservation_of(the_plan: Plan) -> Preservation:
    consumers = ", ".join(f"'{c.prefix}'" for c in the_plan.consumers)
    if not the_plan.request.preserve:
        return Preservation("none", "--no-preserve gives the backward half non-zero weights in "
                                    f"{consumers or 'the stacked layers'}")
    if not the_plan.consumers:
        return Preservation("forward-half", "no consumer named: the LSTM's output sequence doubles in width and its "
                                            "forward half (output[..., :H]) equals the source's; its final states "
                                            "are the source's through the view in the note below")
    return Preservation("exact", f"the consumers {consumers} get zero weights on the backward half (exact as long "
                                 "as they are every module reading the widened output)")


def notes_for(the_plan: Plan) -> list:
    """How to read the widened LSTMs' final states, and what in the wrapper still has the old shapes."""
    notes = []
    for module in the_plan.lstms:
        m = module.lstm
        notes.append(
            f"'{module.prefix}' final states: the forward direction's are h_n.view({m.num_layers}, 2, batch, "
            f"{m.output_size})[:, 0] (and c_n.view({m.num_layers}, 2, batch, {m.hidden_size})[:, 0]), exactly the "
            "old h_n and c_n; h_n[-1] is now the last layer's backward state. A module that reads them (a decoder "
            "started from the encoder's states) keeps its function through that view")
    source = the_plan.source
    if source.where and isinstance(source.obj, dict):
        stale = [k for k in source.obj if isinstance(k, str) and any(h in k.lower() for h in OPTIMIZER_HINTS)]
        if stale:
            notes.append(f"the checkpoint's {', '.join(map(repr, stale))} (kept as it was) holds state for the "
                         "unidirectional parameters: start a new optimizer for the widened model")
    return notes
