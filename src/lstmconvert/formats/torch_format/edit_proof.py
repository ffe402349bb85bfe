"""``describe_edit`` and ``prove_edit``: what an in-place edit of a state_dict would change, and a
structural proof that an edited file computes what its source did.

A state_dict holds no code, so an edited file cannot be run the way the user's module runs it. The
proof checks instead what function preservation rests on: every tensor outside the widened LSTMs and
consumers is identical bit for bit (dtype, shape, bytes), the forward weights are identical, each
widened tensor keeps its old values and has zeros where the backward half enters, the only new keys
are the LSTMs' ``*_reverse`` tensors (shaped like their forward twins), and every other entry of the
checkpoint is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ...errors import UnsupportedError
from ...options import EditRequest
from .checkpoint import LSTM_KEY
from .edit_plan import NO_PRESERVE_NOTE, consumer_of, input_width, lstm_list, modules_of, normalise, open_source


def describe_edit(path: Path, request: EditRequest) -> list:
    """One dict per module (and per other checkpoint entry): name, type, role, change, tensors.

    Roles: "lstm" (gains a backward direction; without ``request.lstms``, every unidirectional
    nn.LSTM, which ``--lstm`` must then name), "consumer" (widened on its input features), "through"
    (copied bit for bit) and "other" (a checkpoint entry beside the state_dict, kept as it was).
    """
    source = open_source(path)
    modules = modules_of(path, source.tensors)
    named = [normalise(p) for p in request.lstms]
    for name in named:
        if name not in modules or modules[name].kind != "LSTM":
            raise UnsupportedError(f"--lstm {name}: no nn.LSTM under that prefix; LSTM prefixes found: "
                                   f"{lstm_list(modules)}")
    lstms = named or [p for p, m in modules.items() if m.kind == "LSTM" and not m.lstm.bidirectional]
    consumers = [normalise(p) for p in request.consumers]
    for name in consumers:
        if name not in modules:
            raise UnsupportedError(f"--consumer {name}: there is no module under that prefix")
    widths = {modules[p].lstm.width for p in lstms}
    rows = []
    for prefix, module in modules.items():
        row = {"name": prefix or "<root>", "type": module.kind, "role": "through", "change": "",
               "tensors": module.summary()}
        if prefix in lstms:
            row["role"], row["change"] = "lstm", _lstm_change(module, named_by_user=bool(named))
            if prefix in consumers and not module.lstm.bidirectional:  # it also reads another widened LSTM
                weight = source.tensors[module.param("weight_ih_l0")]
                row["change"] += f"; reads the widened output: {_widened_shape(weight, 'weight_ih_l0')}"
        elif prefix in consumers and widths:
            takes = input_width(module)
            consumer = consumer_of(module, takes if takes in widths else min(widths))
            row["role"] = "consumer"
            anyway = f" ({NO_PRESERVE_NOTE})" if consumer.changes else ""
            row["change"] = (f"refused: {consumer.problem}{anyway}" if consumer.problem else
                             "; ".join(_widened_shape(source.tensors[c.key], c.key[len(prefix) + 1:] if prefix
                                                      else c.key) for c in consumer.changes)
                             + " (zeros for the backward half)")
        elif widths and input_width(module) in widths and module.kind in ("Linear", "Conv1d", "LSTM"):
            row["change"] = (f"takes {input_width(module)} features, as wide as the LSTM's output: if it reads it, "
                             f"name it with --consumer {prefix}")
        rows.append(row)
    if source.where and isinstance(source.obj, Mapping):
        for key, value in source.obj.items():
            if key != source.where[0]:
                rows.append({"name": str(key), "type": type(value).__name__, "role": "other",
                             "change": "kept as it was", "tensors": ""})
    return rows


def _lstm_change(module, named_by_user: bool) -> str:
    m = module.lstm
    if m.bidirectional:
        return "already bidirectional: nothing to widen"
    fields = sum(1 for k in module.keys if k.endswith("_l0"))
    change = f"bidirectional: adds {fields * m.num_layers} *_reverse tensors"
    if m.num_layers > 1:
        layers = "l1" if m.num_layers == 2 else f"l1..l{m.num_layers - 1}"
        change += (f"; weight_ih_{layers} {4 * m.hidden_size}x{m.output_size} -> "
                   f"{4 * m.hidden_size}x{2 * m.output_size} (zeros for the backward half)")
    change += f"; output {m.output_size} -> {2 * m.output_size} features"
    return change if named_by_user else f"{change} (name it with --lstm {module.prefix or '<root>'})"


def _widened_shape(tensor: torch.Tensor, name: str) -> str:
    shape = list(tensor.shape)
    axis = 0 if len(shape) == 1 else 1
    wider = shape.copy()
    wider[axis] *= 2
    return f"{name} {'x'.join(map(str, shape))} -> {'x'.join(map(str, wider))}"


# -- the proof ----------------------------------------------------------------------------------
def prove_edit(src: Path, dst: Path, request: EditRequest) -> tuple:
    """(passed, lines): the structural proof described in the module docstring.

    ``request`` names the LSTMs and consumers the edit was asked for; when it names none, they are
    read off the two files (the LSTMs that gained ``_reverse`` tensors, the modules whose tensors grew).
    """
    before, after = open_source(src), open_source(dst)
    old, new = before.tensors, after.tensors
    failures, identical, widened, reverse = [], {}, {}, []
    for key, tensor in old.items():
        if key not in new:
            failures.append(f"{key} is missing from {dst}")
        elif tuple(new[key].shape) == tuple(tensor.shape):
            if _bit_identical(tensor, new[key]):
                identical[key] = True
            else:
                failures.append(f"{key} changed (dtype or values), but it is not widened")
        else:
            problem = _widening_problem(tensor, new[key])
            if problem:
                failures.append(f"{key}: {problem}")
            else:
                widened[key] = True
    already_bidirectional = {_owner(k) for k in old if LSTM_KEY.match(k) and LSTM_KEY.match(k)["reverse"]}
    for key in new:
        if key in old:
            continue
        match = LSTM_KEY.match(key)
        forward = key[: -len("_reverse")] if match and match["reverse"] else None
        if forward is None or forward not in old or _owner(key) in already_bidirectional:
            failures.append(f"{key} is new, and not the backward twin of a unidirectional nn.LSTM's parameter")
        elif tuple(new[key].shape) != tuple(new[forward].shape) or new[key].dtype != new[forward].dtype:
            failures.append(f"{key} has shape {list(new[key].shape)}, its forward twin {list(new[forward].shape)}")
        else:
            reverse.append(key)
    lstms = sorted({_owner(k) for k in reverse})
    # widened tensors outside a widened LSTM's own stack (its layer 0 input counts: it reads another LSTM)
    consumers = sorted({_owner(k) for k in widened if _owner(k) not in lstms or k.endswith("weight_ih_l0")})
    failures += _compare_request(request, lstms, consumers)
    failures += _compare_entries(before, after)
    lines = [
        f"structural proof (a state_dict holds no code to run): {len(old)} tensors of {src} against {dst}",
        f"identical bit for bit (dtype, shape, bytes): {len(identical)} tensors, among them every forward LSTM "
        "weight that keeps its shape and every pass-through tensor",
        f"widened, old values identical and zeros where the backward half enters: {len(widened)} tensors "
        f"({', '.join(sorted(widened)) or 'none'})",
        f"new backward-direction tensors, shaped like their forward twins: {len(reverse)} "
        f"(nn.LSTM {', '.join(repr(p) for p in lstms) or 'none'})",
        f"consumers widened: {', '.join(repr(c) for c in consumers) or 'none'}",
    ]
    if before.where:
        entries = ", ".join(map(repr, _entries(before))) or "none"
        lines.append(f"checkpoint entries beside the state_dict ({entries}) compared with the source's")
    lines += [f"FAILED: {f}" for f in failures]
    return not failures, lines


def _owner(key: str) -> str:
    """The module prefix a key belongs to (an nn.LSTM's for its parameters)."""
    match = LSTM_KEY.match(key)
    return (match["module"] or "") if match else key.rpartition(".")[0]


def _bit_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    try:
        return torch.equal(a.reshape(-1).contiguous().view(torch.uint8), b.reshape(-1).contiguous().view(torch.uint8))
    except RuntimeError:  # dtypes without a byte view (quantized): values instead
        return torch.equal(a, b)


def _widening_problem(old: torch.Tensor, new: torch.Tensor):
    """None if ``new`` is ``old`` with a zero block of the same size appended on one axis."""
    if old.dtype != new.dtype or old.dim() != new.dim():
        return f"dtype/rank changed ({old.dtype} {list(old.shape)} -> {new.dtype} {list(new.shape)})"
    axes = [d for d in range(old.dim()) if old.shape[d] != new.shape[d]]
    if len(axes) != 1 or new.shape[axes[0]] != 2 * old.shape[axes[0]]:
        return f"shape {list(old.shape)} -> {list(new.shape)} is not a doubling of the input features"
    axis, width = axes[0], old.shape[axes[0]]
    if not _bit_identical(old, new.narrow(axis, 0, width).contiguous()):
        return "its old values changed"
    if torch.count_nonzero(new.narrow(axis, width, width)).item():
        return "the weights on the backward half are not zero, so the backward direction reaches the output"
    return None


def _compare_request(request: EditRequest, lstms: list, consumers: list) -> list:
    failures = []
    if request.lstms and sorted(normalise(p) for p in request.lstms) != lstms:
        failures.append(f"the LSTMs widened ({', '.join(lstms) or 'none'}) are not those requested "
                        f"({', '.join(request.lstms)})")
    if request.lstms and sorted(normalise(p) for p in request.consumers) != consumers:
        failures.append(f"the consumers widened ({', '.join(consumers) or 'none'}) are not those requested "
                        f"({', '.join(request.consumers) or 'none'})")
    if not lstms:
        failures.append("no nn.LSTM gained a backward direction")
    return failures


def _entries(source) -> list:
    return [k for k in source.obj if k != source.where[0]] if isinstance(source.obj, Mapping) else []


def _compare_entries(before, after) -> list:
    """The checkpoint around the state_dict, and the state_dict's non-tensor entries, must be unchanged."""
    failures = []
    if before.where != after.where:
        return [f"checkpoint: the state_dict sits at {list(after.where)}, not {list(before.where)}"]
    if before.where:
        if list(before.obj) != list(after.obj):
            failures.append(f"checkpoint entries differ: {list(before.obj)} -> {list(after.obj)}")
        for key in _entries(before):
            if key in after.obj and not _same(before.obj[key], after.obj[key]):
                failures.append(f"checkpoint entry {key!r} changed")
    others = [(k, v) for k, v in before.state.items() if not isinstance(v, torch.Tensor)]
    for key, value in others:
        if key not in after.state or not _same(value, after.state[key]):
            failures.append(f"checkpoint: state_dict entry {key!r} changed")
    return failures


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and _bit_identical(a, b)
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    except Exception:
        return False
