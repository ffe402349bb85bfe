"""What a file that holds whole modules says beyond a state_dict: module classes and settings.

A state_dict is only names and tensors. A TorchScript archive also records, for every submodule, its
class and its attributes. Some of those facts settle what a state_dict leaves open:

* ``nn.LSTM(batch_first=...)``: the input layout (TorchScript keeps it when scripted, not traced);
* ``nn.Embedding(padding_idx=...)``, a training-time marker, kept so rebuilt modules have it too;
* the activations of an ``nn.Sequential`` head: ``Sequential(Linear, ReLU, Dropout, Linear)`` runs
  its children in order, so ReLU sits after the first Linear. Modules outside an ``nn.Sequential``
  run in whatever order the user's ``forward`` chose, which the file does not record, so nothing is
  inferred from them.

A ``ModuleTree`` maps each submodule's key prefix ("" for the root) to its ``SubModule``, in
registration order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from .stand_ins import StandIn

# nn.Module attributes a pickled module keeps its parameters, buffers and children in.
_MODULE_FIELDS = ("_parameters", "_buffers", "_modules")
# Attributes read from submodules (when the file has them).
_ATTRIBUTES = ("batch_first", "dim", "padding_idx", "max_norm", "mode")

LSTM_CLASS = "torch.nn.modules.rnn.LSTM"
COMPILED_CLASS = "torch._dynamo.eval_frame.OptimizedModule"
SEQUENTIAL_CLASS = "torch.nn.modules.container.Sequential"
EMBEDDING_CLASS = "torch.nn.modules.sparse.Embedding"
# Modules that compute nothing at inference.
NEUTRAL_CLASSES = {f"torch.nn.modules.{name}" for name in (
    "dropout.Dropout", "dropout.Dropout1d", "dropout.Dropout2d", "dropout.Dropout3d", "dropout.AlphaDropout",
    "dropout.FeatureAlphaDropout", "linear.Identity",
)}
# Activation modules with a head activation of the neutral model. Softmax must be over the last axis.
ACTIVATION_CLASSES = {
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.Softmax": "softmax",
}


@dataclass(frozen=True)
class SubModule:
    """One module of the file: its full class name and the attributes of ``_ATTRIBUTES`` it has."""

    kind: str
    attrs: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.kind.rsplit(".", 1)[-1]


# -- pickled modules (stand-ins): recognised only to be refused precisely -----------------------
def is_pickled_module(obj: object) -> bool:
    """True for the stand-in of a pickled nn.Module: its state holds parameters, buffers, children."""
    return (isinstance(obj, StandIn) and isinstance(obj.state, Mapping)
            and all(isinstance(obj.state.get(name), Mapping) for name in _MODULE_FIELDS))


def pickled_module(obj: object) -> Optional[StandIn]:
    """The pickled module ``obj`` is, or that ``torch.compile`` wrapped: an OptimizedModule pickles
    itself as ``OptimizedModule(original_module, compile_context)``. None if neither."""
    if is_pickled_module(obj):
        return obj
    if (isinstance(obj, StandIn) and obj.name == COMPILED_CLASS and obj.args
            and is_pickled_module(obj.args[0])):
        return obj.args[0]
    return None


def _plain(value: object) -> bool:
    return isinstance(value, (bool, int, float, str))


# -- TorchScript -------------------------------------------------------------------------------
def script_tree(module) -> dict:
    """The ModuleTree of a loaded TorchScript module (class names without TorchScript's mangling)."""
    tree = {}
    for prefix, sub in module.named_modules():
        kind = _unmangle(sub._c._type().qualified_name())
        attrs = {}
        for name in _ATTRIBUTES:
            try:
                value = getattr(sub, name)
            except AttributeError:  # traced modules keep few attributes
                continue
            if _plain(value):
                attrs[name] = value
        tree[prefix] = SubModule(kind, attrs)
    return tree


def _unmangle(name: str) -> str:
    name = re.sub(r"___torch_mangle_\d+\.", "", name)
    return name[len("__torch__."):] if name.startswith("__torch__.") else name


# -- reading facts off a tree ------------------------------------------------------------------
def strip_tree(tree: dict, prefix: str) -> dict:
    """The tree of the submodule at ``prefix`` (e.g. the wrapper prefix a state_dict lost)."""
    if not prefix:
        return dict(tree)
    base = prefix.rstrip(".")
    return {k[len(prefix):] if k != base else "": v for k, v in tree.items() if k == base or k.startswith(prefix)}


def embedding_problem(tree: Optional[dict], embedding: Optional[str]) -> Optional[str]:
    """Why the module at the embedding's prefix is not the plain lookup it looks like in a state_dict
    (an nn.EmbeddingBag, a bias-less Linear with as many rows as columns, max_norm), or None."""
    sub = tree.get(embedding) if tree and embedding is not None else None
    if sub is None:
        return None
    if sub.kind != EMBEDDING_CLASS:
        return (f"'{embedding}' is a {sub.short}, not an nn.Embedding; lstmconvert reads [nn.Embedding] -> nn.LSTM "
                "-> nn.Linear head")
    if sub.attrs.get("max_norm") is not None:
        return (f"'{embedding}' is an nn.Embedding with max_norm={sub.attrs['max_norm']}, which rescales rows as it "
                "looks them up; lstmconvert's embedding is a plain lookup")
    return None


def embedding_padding_idx(tree: Optional[dict], embedding: Optional[str]) -> Optional[int]:
    """nn.Embedding's padding_idx (a training-time marker, kept so a rebuilt module has it too)."""
    sub = tree.get(embedding) if tree and embedding is not None else None
    value = sub.attrs.get("padding_idx") if sub is not None and sub.kind == EMBEDDING_CLASS else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def lstm_batch_first(tree: Optional[dict], modules: list) -> Optional[bool]:
    """The ``batch_first`` all the given nn.LSTM prefixes agree on, or None if unknown or mixed."""
    if not tree:
        return None
    values = {tree[m].attrs.get("batch_first") if m in tree and _is_lstm(tree[m]) else None for m in modules}
    return values.pop() if len(values) == 1 and None not in values else None


def _is_lstm(sub: SubModule) -> bool:
    """nn.LSTM or a subclass of it (nn.LSTM records ``mode = "LSTM"`` on itself)."""
    return sub.kind == LSTM_CLASS or sub.attrs.get("mode") == "LSTM"


def sequential_activations(tree: Optional[dict], head: list, lstm_modules: list) -> Optional[list]:
    """Each head layer's activation, when all head layers sit in one nn.Sequential; else None.

    Raises ValueError naming a module in that Sequential that lstmconvert's head cannot compute (so
    the reader refuses rather than leave it out).
    """
    if not tree or not head:
        return None
    parents = {_parent(name) for name in head}
    if len(parents) != 1:
        return None
    parent = parents.pop()
    if parent not in tree or tree[parent].kind != SEQUENTIAL_CLASS:
        return None
    children = [k for k in tree if k != parent and _parent(k) == parent]
    positions = [children.index(name) for name in head if name in children]
    if len(positions) != len(head) or positions != sorted(positions):
        return None
    holds_lstm = [i for i, child in enumerate(children)
                  if any(m == child or m.startswith(child + ".") for m in lstm_modules)]
    start = holds_lstm[-1] + 1 if holds_lstm else 0
    _activation(tree, children[start:positions[0]], before=head[0])  # only no-ops may sit before the head
    bounds = positions[1:] + [len(children)]
    return [_activation(tree, children[p + 1:end]) for p, end in zip(positions, bounds)]


def _activation(tree: dict, between: list, before: Optional[str] = None) -> str:
    """The activation the modules ``between`` two head layers compute ('linear' if only no-ops)."""
    found = []
    for name in between:
        sub = tree[name]
        if sub.kind in NEUTRAL_CLASSES:
            continue
        activation = ACTIVATION_CLASSES.get(sub.kind)
        if activation == "softmax" and sub.attrs.get("dim") not in (-1,):
            raise ValueError(f"'{name}' is a Softmax over dim {sub.attrs.get('dim', 'unknown')}; lstmconvert's "
                             "head applies softmax over the last axis only")
        if activation is None or before is not None:
            where = f"before the head layer '{before}'" if before is not None else "in the head"
            known = ", ".join(c.rsplit(".", 1)[-1] for c in ACTIVATION_CLASSES)
            raise ValueError(f"'{name}' ({sub.short}) sits {where}; lstmconvert's head layers are Linear layers "
                             f"with an activation ({known}) and nothing else")
        found.append((name, activation))
    if len(found) > 1:
        raise ValueError(f"{' and '.join(repr(n) for n, _ in found)} are two activations in a row; lstmconvert's "
                         "head layers take one activation each")
    return found[0][1] if found else "linear"


def _parent(prefix: str) -> str:
    return prefix.rsplit(".", 1)[0] if "." in prefix else ""
