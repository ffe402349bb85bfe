"""What an in-place edit of a PyTorch state_dict touches, decided before anything is computed.

A state_dict has no graph: its modules are found by grouping keys by prefix and told apart by their
tensors' names and shapes (``classify``). The user names the ``nn.LSTM``s to widen and the modules
that read their output sequence; ``plan`` checks both against the file and refuses, with the
prefixes and shapes it found, whatever cannot be widened exactly. ``editor`` then computes and
writes; ``edit_proof`` describes and proves the same plan.

Consumers widened on their input features (the widened LSTM's output, width ``W``):
``nn.Linear`` weight (out, W), ``nn.Conv1d`` weight (out, W, k), ``nn.LSTM`` weight_ih_l0 (4H, W)
(and its ``_reverse`` twin). Normalisations (LayerNorm, BatchNorm) mix or rescale the backward half
into what follows, so they are refused unless preservation is switched off.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


from ...errors import ReadError, UnsupportedError
from ...options import EditRequest
from .checkpoint import LSTM_KEY, _unwrap, load_checkpoint
from .discover import _lstm_module, _normalise_hint, _other_rnn
from .naming import join

# Consumers whose input features the widening can pad exactly.
WIDENABLE = ("Linear", "Conv1d", "LSTM")
# Normalisations: widened only with --no-preserve, new features get the module's default init.
NORM_DEFAULTS = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
NO_PRESERVE_NOTE = "--no-preserve widens it anyway (new features: weight 1, bias 0, running mean 0, variance 1)"


@dataclass
class Source:
    """A torch.save file opened for editing: the whole object and the state_dict inside it."""

    path: Path
    obj: object  # everything torch.load returned (a checkpoint dict, or the state_dict itself)
    where: tuple  # keys leading from ``obj`` to the state_dict; () when obj is the state_dict
    state: Mapping  # the state_dict as stored (wrapper prefixes kept)
    stripped: str  # the wrapper prefix every key carries (``module.``), removed in ``tensors``
    tensors: dict  # key without wrapper prefix -> tensor, in file order


@dataclass
class Module:
    """The tensors under one prefix (all of an nn.LSTM's parameters count as one module)."""

    prefix: str
    keys: list  # keys (without wrapper prefix), in file order
    shapes: dict  # local name ("weight", "weight_ih_l0") -> shape
    kind: str  # "LSTM", "Linear", "Conv1d", "LayerNorm", "BatchNorm", ...
    lstm: object = None  # discover._LstmModule for an LSTM

    def param(self, name: str) -> str:
        return join(self.prefix, name)

    def summary(self) -> str:
        if self.lstm is not None:
            m = self.lstm
            layers = f"{m.num_layers} layer{'s' if m.num_layers > 1 else ''}"
            return (f"{'bidirectional ' if m.bidirectional else ''}{layers}, input {m.input_size}, "
                    f"hidden {m.hidden_size}" + (f", proj {m.output_size}" if m.output_size != m.hidden_size else ""))
        return ", ".join(f"{name} {'x'.join(map(str, shape)) or 'scalar'}" for name, shape in self.shapes.items())


@dataclass
class Widening:
    """One tensor a consumer changes: ``key`` padded on ``axis``, or (norms) extended with ``fill``."""

    key: str
    axis: int = 1
    fan_in_rows: bool = False  # an LSTM's weight_ih (random bounds from its hidden size)
    fill: Optional[float] = None  # a 1-D normalisation parameter: the new features' value


@dataclass
class Consumer:
    prefix: str
    kind: str
    changes: list  # Widening
    problem: Optional[str] = None  # why it cannot be widened exactly (refused unless --no-preserve)


@dataclass
class Plan:
    source: Source
    modules: dict  # prefix -> Module, in file order
    lstms: list  # Module of each LSTM to widen
    consumers: list  # Consumer
    request: EditRequest
    warnings: list = field(default_factory=list)


# -- opening ------------------------------------------------------------------------------------
def open_source(path: Path) -> Source:
    """Load a torch.save file (restricted, on the CPU) keeping every entry, and find its state_dict."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names) or any(
                n.endswith("/archive_format") for n in names):
            raise UnsupportedError(
                "is a TorchScript or torch.export archive; in-place widening edits torch.save state_dicts and "
                "checkpoints (the archive's code would still build the unidirectional module): widen the module "
                "in your code and save its state_dict, or convert the pure LSTM model with lstmconvert convert")
    import torch  # editing writes the file back with torch.save, so it reads it with torch.load too

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as the reader: torch's notes about old formats are not the user's
            # mmap: the tensors stay file-backed pages, so the edit holds the file once, not twice.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception:
        checkpoint = load_checkpoint(path)  # raises the reader's precise ReadError
        raise UnsupportedError(
            f"holds pickled objects lstmconvert does not load ({', '.join(checkpoint.stood_in) or 'unknown'}); an "
            "in-place edit would have to write them back: save the state_dict (and plain values) on its own")
    checkpoint = _unwrap(obj, "state_dict")
    where = _locate(obj, checkpoint.tensors)
    if where is None:  # pragma: no cover - _unwrap found it, so it is there
        raise ReadError(path, "could not locate the state_dict inside the checkpoint")
    state = obj
    for key in where:
        state = state[key]
    return Source(path, obj, where, state, checkpoint.stripped, checkpoint.tensors)


def _locate(obj: object, tensors: dict, depth: int = 0) -> Optional[tuple]:
    """The keys leading to the mapping that holds exactly these tensor objects."""
    if not isinstance(obj, Mapping) or depth > 5:
        return None
    probe = next(iter(tensors.values()))
    if any(value is probe for value in obj.values()):
        return ()
    for key, value in obj.items():
        found = _locate(value, tensors, depth + 1)
        if found is not None:
            return (key,) + found
    return None


# -- modules ------------------------------------------------------------------------------------
def modules_of(path: Path, tensors: dict) -> dict:
    """prefix -> Module for every module in the state_dict, in the order its first key appears."""
    grouped: dict = {}
    for key, tensor in tensors.items():
        match = LSTM_KEY.match(key)
        prefix = (match["module"] or "") if match else key.rpartition(".")[0]
        local = key[len(prefix) + 1:] if prefix else key
        grouped.setdefault(prefix, {})[local] = (key, tuple(tensor.shape))
    found = {}
    for prefix, params in grouped.items():
        shapes = {local: shape for local, (_, shape) in params.items()}
        module = Module(prefix, [key for key, _ in params.values()], shapes, "")
        module.kind, module.lstm = _classify(path, module, dict(params.values()))
        found[prefix] = module
    return found


def _classify(path: Path, module: Module, shapes: dict) -> tuple:
    """(kind, LSTM facts or None) from parameter names and shapes; a state_dict records no classes."""
    names = module.shapes
    if "weight_ih_l0" in names or "weight_hh_l0" in names:
        other = _other_rnn(names.get("weight_hh_l0", ()))
        if other:
            return other.split(".")[-1], None
        entries = {}
        for key in module.keys:
            match = LSTM_KEY.match(key)
            if match:
                entries[(int(match["layer"]), bool(match["reverse"]), match["param"])] = key
        try:
            return "LSTM", _lstm_module(module.prefix, entries, shapes)
        except ReadError:
            return "LSTM (inconsistent shapes)", None
    if "in_proj_weight" in names or "q_proj_weight" in names:
        return "MultiheadAttention", None
    if "running_mean" in names and "running_var" in names:
        return "BatchNorm", None
    weight = names.get("weight")
    if weight is None:
        return "tensors", None
    kinds = {1: "LayerNorm", 2: "Linear" if "bias" in names else "Linear or Embedding",
             3: "Conv1d", 4: "Conv2d", 5: "Conv3d"}
    return kinds.get(len(weight), "unknown"), None


def lstm_list(modules: dict) -> str:
    lstms = [m for m in modules.values() if m.kind == "LSTM"]
    return ", ".join(f"'{m.prefix or '<root>'}' ({m.summary()})" for m in lstms) or "none"


def _others(modules: dict) -> str:
    listed = [f"'{p}' ({m.kind})" for p, m in modules.items() if m.kind != "LSTM"]
    return ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "") if listed else "none"


def normalise(prefix: str) -> str:
    """A user's prefix as the file's keys carry it: no wrapper prefix, no ``.weight``, no trailing dot
    ("<root>", as messages show it, is the bare module's empty prefix)."""
    name = _normalise_hint(prefix).strip(".")
    return "" if name == "<root>" else name


# -- consumers ----------------------------------------------------------------------------------
def consumer_of(module: Module, width: int) -> Consumer:
    """How ``module`` takes a widened input of ``width`` features; ``problem`` says why it cannot exactly."""
    shapes, kind = module.shapes, module.kind
    if kind == "LSTM" and module.lstm is not None:
        m = module.lstm
        if m.input_size != width:
            return Consumer(module.prefix, kind, [], _width_problem(module, m.input_size, "weight_ih_l0", width))
        keys = ["weight_ih_l0"] + (["weight_ih_l0_reverse"] if m.bidirectional else [])
        return Consumer(module.prefix, kind, [Widening(module.param(k), 1, True) for k in keys])
    if kind in ("Linear", "Linear or Embedding", "Conv1d"):
        kind = "Linear" if kind.startswith("Linear") else kind
        if shapes["weight"][1] != width:
            return Consumer(module.prefix, kind, [], _width_problem(module, shapes["weight"][1], "weight", width))
        return Consumer(module.prefix, kind, [Widening(module.param("weight"), 1)])
    if kind in ("LayerNorm", "BatchNorm"):
        changes = [Widening(module.param(name), 0, fill=NORM_DEFAULTS[name])
                   for name in NORM_DEFAULTS if name in shapes and shapes[name] == (width,)]
        if shapes.get("weight", (width,)) != (width,) or not changes:
            return Consumer(module.prefix, kind, [], _width_problem(module, (shapes.get("weight") or [0])[0],
                                                                    "weight", width))
        mixes = ("normalises over the features" if kind == "LayerNorm"
                 else "rescales each feature with running statistics")
        problem = (f"'{module.prefix}' looks like a {kind} ({module.summary()}): it {mixes}, so the backward half "
                   "changes what it outputs and the model cannot compute what it did")
        return Consumer(module.prefix, kind, changes, problem)
    if kind == "MultiheadAttention":
        return Consumer(module.prefix, kind, [], (
            f"'{module.prefix}' is an nn.MultiheadAttention: its projections mix every feature and its output "
            "width is its input width, so it cannot take the widened output; name the nn.Linear modules that "
            "read the LSTM, or widen the LSTM whose output it does not read"))
    return Consumer(module.prefix, kind, [], (
        f"'{module.prefix}' ({kind}: {module.summary()}) is not a module lstmconvert can widen on its input "
        f"features (it widens {', '.join('nn.' + k for k in WIDENABLE)})"))


def _width_problem(module: Module, takes: int, param: str, width: int) -> str:
    shape = "x".join(map(str, module.shapes.get(param, ())))
    grouped = "; a grouped Conv1d (groups > 1) cannot be widened" if module.kind == "Conv1d" else ""
    return (f"'{module.prefix}' ({module.kind}, {param} {shape}) takes {takes} input features, but the LSTM output "
            f"it would read is {width} wide; name only modules that read the widened LSTM's output sequence{grouped}")


# -- the plan -----------------------------------------------------------------------------------
def plan(source: Source, request: EditRequest) -> Plan:
    """Check the request against the file; UnsupportedError naming what cannot be done."""
    from ...convert import BACKWARD_INITS

    if request.backward not in BACKWARD_INITS:
        raise UnsupportedError(f"--backward must be one of {', '.join(BACKWARD_INITS)}, not {request.backward!r}")
    if request.merge != "concat":
        raise UnsupportedError(
            f"--merge {request.merge} cannot be placed in a state_dict: nn.LSTM(bidirectional=True) concatenates "
            "its two directions, and the file holds no code to add them; use --merge concat (the default)")
    modules = modules_of(source.path, source.tensors)
    found = lstm_list(modules)
    if not request.lstms:
        raise UnsupportedError(
            "widening an nn.LSTM inside a state_dict of any shape needs it named with --lstm PREFIX and the modules "
            "that read its output sequence with --consumer PREFIX[,PREFIX] (a state_dict holds no graph to find "
            f"them in); LSTM prefixes found: {found}; other modules: {_others(modules)} (lstmconvert inspect "
            "shows what widening would change)")
    lstms = []
    for name in dict.fromkeys(normalise(p) for p in request.lstms):
        module = modules.get(name)
        if module is None or module.kind != "LSTM":
            what = "no module" if module is None else f"a {module.kind}, not an nn.LSTM,"
            raise UnsupportedError(f"--lstm {name}: there is {what} under that prefix; LSTM prefixes found: {found}")
        if module.lstm.bidirectional:
            raise UnsupportedError(f"--lstm {name}: nn.LSTM '{name}' is already bidirectional")
        lstms.append(module)
    widened = {m.prefix: m.lstm.width for m in lstms}
    consumers = []
    for name in dict.fromkeys(normalise(p) for p in request.consumers):
        module = modules.get(name)
        if module is None:
            listed = ", ".join(f"'{p}' ({m.kind})" for p, m in modules.items() if m.kind != "tensors")
            raise UnsupportedError(f"--consumer {name}: there is no module under that prefix; modules found: {listed}")
        widths = {width for prefix, width in widened.items() if prefix != name}
        if not widths:
            raise UnsupportedError(f"--consumer {name}: '{name}' is the LSTM being widened, not a reader of its output")
        takes = input_width(module)
        consumer = consumer_of(module, takes if takes in widths else min(widths))
        if consumer.problem and (request.preserve or not consumer.changes):
            anyway = f"; {NO_PRESERVE_NOTE}" if consumer.changes else ""
            raise UnsupportedError(f"--consumer {name}: {consumer.problem}; refused{anyway}")
        consumers.append(consumer)
    result = Plan(source, modules, lstms, consumers, request)
    result.warnings = [c.problem for c in consumers if c.problem]
    return result


def input_width(module: Module) -> Optional[int]:
    """How many input features a module takes, as far as its tensors tell."""
    if module.lstm is not None:
        return module.lstm.input_size
    weight = module.shapes.get("weight") or ()
    return weight[0] if len(weight) == 1 else (weight[1] if len(weight) > 1 else None)
