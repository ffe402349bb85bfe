"""Find the embedding, the LSTM stack and the Linear head in a state_dict, from names and shapes.

A state_dict is only names and tensors, so the model's structure is inferred:

* LSTM layers: every ``<prefix>.weight_ih_l{k}`` group (any prefix), checked against nn.LSTM's
  shapes. Several nn.LSTM modules (``lstm1.``, ``lstm2.``) become consecutive layers, in key order,
  if each one's input width equals the previous one's output width.
* Embedding: a bias-less 2-D ``*.weight`` before the first LSTM key whose column count is the first
  LSTM layer's input size. None found means the model takes feature vectors.
* Head: ``nn.Linear`` layers (2-D ``*.weight``, optional ``*.bias``) after the last LSTM key, the
  first taking the LSTM's output width, the next ones chaining. (What runs between them is not in a
  state_dict; the reader settles it, see ``reader``.)

Ambiguity is never settled by guessing: the error lists the candidates and names the hint
(``--embedding`` / ``--head``) that picks one. Names and shapes only; no tensor data is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...errors import OutsideNeutralShapeError, ReadError
from ...options import ReadHints
from .checkpoint import LSTM_KEY
from .naming import LayerSlot, Naming, join, lstm_key


@dataclass
class _LstmModule:
    """One nn.LSTM found in the state_dict."""

    prefix: str
    num_layers: int
    bidirectional: bool
    input_size: int
    hidden_size: int
    output_size: int  # per direction: proj_size or hidden_size

    @property
    def width(self) -> int:
        return self.output_size * (2 if self.bidirectional else 1)

    def describe(self) -> str:
        return f"'{self.prefix or '<root>'}'"


@dataclass
class _Linear:
    """A 2-D ``<prefix>.weight`` (with its ``<prefix>.bias`` if any) that is not an LSTM parameter."""

    prefix: str
    out_features: int
    in_features: int
    has_bias: bool
    position: int

    def describe(self) -> str:
        return f"{join(self.prefix, 'weight')} ({self.out_features}x{self.in_features})"


def lstm_keys(shapes: dict) -> list:
    return [k for k in shapes if LSTM_KEY.match(k)]


def discover(shapes: dict, hints: ReadHints, ordered: bool = True) -> Naming:
    """The Naming of a state_dict given as ordered {key: shape}; ReadError when it is not clear.

    ``ordered=False``: the keys are not in the module's order (a .safetensors file sorts them), so
    any 2-D tensor may be the embedding or a head layer, as far as the shapes allow.
    """
    modules = _lstm_modules(shapes)
    _check_chain(modules)
    slots = tuple(LayerSlot(m.prefix, k) for m in modules for k in range(m.num_layers))
    order = {key: i if ordered else 0 for i, key in enumerate(shapes)}
    positions = [order[k] for k in lstm_keys(shapes)]
    first, last = (min(positions), max(positions)) if ordered else (1, -1)  # unordered: all before, all after
    linears = _linears(shapes, order)
    embedding = _embedding(linears, modules[0].input_size, first, hints.embedding)
    taken = {embedding} if embedding is not None else set()
    head = _head([g for g in linears if g.prefix not in taken], modules[-1].width, last, hints.head)
    return Naming(embedding=embedding, layers=slots, head=tuple(head))


# -- LSTM modules ------------------------------------------------------------------------------
def _lstm_modules(shapes: dict) -> list:
    grouped: dict = {}
    for key in lstm_keys(shapes):
        match = LSTM_KEY.match(key)
        entries = grouped.setdefault(match["module"] or "", {})
        entries[(int(match["layer"]), bool(match["reverse"]), match["param"])] = key
    return [_lstm_module(prefix, entries, shapes) for prefix, entries in grouped.items()]


def _lstm_module(prefix: str, entries: dict, shapes: dict) -> _LstmModule:
    """Check one nn.LSTM's keys and shapes the way nn.LSTM would build them."""
    name = f"LSTM '{prefix or '<root>'}'"
    layers = sorted({layer for layer, _, _ in entries})
    if layers != list(range(len(layers))):
        raise ReadError(f"{name} has layers {layers}; nn.LSTM numbers them 0..{len(layers) - 1} without gaps")
    reverse = {rev for _, rev, _ in entries}
    bidirectional = True in reverse
    if bidirectional and any((layer, False, "weight_ih") not in entries for layer in layers):
        raise ReadError(f"{name} has _reverse parameters without forward ones")
    if bidirectional and any((layer, True, "weight_ih") not in entries for layer in layers):
        raise ReadError(f"{name} has _reverse parameters for only some layers")
    directions = (False, True) if bidirectional else (False,)
    params = {param for _, _, param in entries}
    expect_bias = "bias_ih" in params or "bias_hh" in params
    expect_proj = "weight_hr" in params
    hidden = output = input_size = None
    previous_width = None
    for layer in layers:
        for rev in directions:
            def key(param: str) -> str:
                return lstm_key(prefix, param, layer, rev)

            wanted = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if expect_bias else [])
            wanted += ["weight_hr"] if expect_proj else []
            missing = [key(p) for p in wanted if (layer, rev, p) not in entries]
            if missing:
                raise ReadError(f"{name} lacks {', '.join(missing)} (nn.LSTM keeps the same parameters in every "
                                      f"layer){_renamed(missing, shapes)}")
            w_ih = shapes[key("weight_ih")]
            other = _other_rnn(shapes[key("weight_hh")])
            if other:
                raise ReadError(f"'{prefix or '<root>'}' is {other}, not an LSTM: {key('weight_hh')} has shape "
                                      f"{list(shapes[key('weight_hh')])}; lstmconvert converts LSTMs only")
            if len(w_ih) != 2 or w_ih[0] % 4 or w_ih[0] == 0:
                raise ReadError(f"{key('weight_ih')} has shape {list(w_ih)}; an LSTM's is (4*hidden, input) "
                                      "(a GRU has 3*hidden rows, an RNN hidden rows)")
            h = w_ih[0] // 4
            out = shapes[key("weight_hr")][0] if expect_proj and len(shapes[key("weight_hr")]) == 2 else h
            expected = {key("weight_hh"): (4 * h, out)}
            if expect_bias:
                expected[key("bias_ih")] = expected[key("bias_hh")] = (4 * h,)
            if expect_proj:
                expected[key("weight_hr")] = (out, h)
            for k, shape in expected.items():
                if tuple(shapes[k]) != shape:
                    raise ReadError(f"{k} has shape {list(shapes[k])}, but nn.LSTM with hidden size {h} "
                                          f"needs {list(shape)} (is it an LSTM?)")
            if hidden is None:
                hidden, output, input_size = h, out, w_ih[1]
            elif (h, out) != (hidden, output):
                raise ReadError(f"{key('weight_ih')} implies hidden size {h} (output {out}); the rest of {name} "
                                      f"has {hidden} (output {output})")
            if layer > 0 and w_ih[1] != previous_width:
                raise ReadError(f"{key('weight_ih')} takes {w_ih[1]} inputs but layer {layer - 1} of {name} "
                                      f"outputs {previous_width}")
        previous_width = output * len(directions)
    return _LstmModule(prefix, len(layers), bidirectional, input_size, hidden, output)


def _other_rnn(w_hh: tuple) -> Optional[str]:
    """'an nn.GRU' / 'an nn.RNN' when a recurrent matrix has their shape and not an LSTM's.

    Recurrent rows are 4*hidden for an LSTM, 3*hidden for a GRU and hidden for a plain RNN, with
    hidden columns (an LSTM with projections has proj_size columns and 4*hidden rows, never 3x).
    """
    if len(w_hh) != 2 or w_hh[1] == 0:
        return None
    if w_hh[0] == 3 * w_hh[1]:
        return "an nn.GRU"
    if w_hh[0] == w_hh[1]:
        return "an nn.RNN"
    return None


def _renamed(missing: list, shapes: dict) -> str:
    """A hint when a missing parameter is there under a known alternative name."""
    raw = [f"{k}_raw" for k in missing if f"{k}_raw" in shapes]
    if raw:
        return (f"; {', '.join(raw)} is there instead, the name AWD-LSTM's WeightDrop gives the recurrent weight "
                "(at inference it is the weight itself): rename it without '_raw' and save the state_dict again")
    parametrized = [k for k in missing if any(key.startswith(_parametrization_prefix(k)) for key in shapes)]
    if parametrized:
        return (f"; {_parametrization_prefix(parametrized[0])}* is there instead: the parameter is parametrized "
                "(torch.nn.utils.parametrize, e.g. weight_norm), which computes it in your module; call "
                "torch.nn.utils.parametrize.remove_parametrizations on it and save the state_dict again")
    return ""


def _parametrization_prefix(key: str) -> str:
    """Where torch.nn.utils.parametrize keeps ``<module>.<name>``: ``<module>.parametrizations.<name>.``"""
    module, _, name = key.rpartition(".")
    return f"{join(module, 'parametrizations')}.{name}."


def _check_chain(modules: list) -> None:
    for before, after in zip(modules, modules[1:]):
        if after.input_size != before.width:
            listed = ", ".join(m.describe() for m in modules)
            raise OutsideNeutralShapeError(
                f"LSTM modules {before.describe()} (output width {before.width}) and {after.describe()} "
                f"(input width {after.input_size}) do not chain; lstmconvert reads one stack of LSTMs "
                f"(found {listed})",
                f"LSTM {after.describe()}",
            )


# -- embedding and head ------------------------------------------------------------------------
def _linears(shapes: dict, order: dict) -> list:
    lstm = set(lstm_keys(shapes))
    found = []
    for key, shape in shapes.items():
        if key in lstm or not (key == "weight" or key.endswith(".weight")) or len(shape) != 2:
            continue
        prefix = key[: -len("weight")].rstrip(".")
        bias = shapes.get(join(prefix, "bias"))
        found.append(_Linear(prefix, shape[0], shape[1], bias is not None and tuple(bias) == (shape[0],), order[key]))
    return found


def _normalise_hint(name: str) -> str:
    name = name.strip()
    for suffix in (".weight", ".bias"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for prefix in ("module.", "_orig_mod."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name


def split_head_hint(hint: Optional[str]) -> list:
    """``--head A:relu,B`` -> [("A", "relu"), ("B", None)]: head layer prefixes, each with the
    activation the user says follows it (None: not given)."""
    if hint is None:
        return []
    pairs = []
    for item in hint.split(","):
        if not item.strip():
            continue
        name, _, activation = item.partition(":")
        pairs.append((_normalise_hint(name), activation.strip().lower() or None))
    return pairs


def _embedding(linears: list, input_size: int, first_lstm: int, hint: Optional[str]) -> Optional[str]:
    if hint is not None:
        wanted = _normalise_hint(hint)
        match = next((g for g in linears if g.prefix == wanted), None)
        if match is None or match.has_bias or match.in_features != input_size:
            fitting = [g.describe() for g in linears if not g.has_bias and g.in_features == input_size]
            raise ReadError(f"--embedding {hint}: no bias-less 2-D tensor {join(wanted, 'weight')} with "
                                  f"{input_size} columns (the LSTM's input size); candidates: {', '.join(fitting) or 'none'}")
        return match.prefix
    candidates = [g for g in linears if not g.has_bias and g.in_features == input_size and g.position < first_lstm]
    if len(candidates) > 1:
        raise ReadError(f"several tensors could be the embedding: {', '.join(g.describe() for g in candidates)}; "
                              "pass --embedding NAME")
    return candidates[0].prefix if candidates else None


def _head(linears: list, width: int, last_lstm: int, hint: Optional[str]) -> list:
    after = [g for g in linears if g.position > last_lstm]
    by_prefix = {g.prefix: g for g in linears}
    chain: list = []
    names = [name for name, _ in split_head_hint(hint)]
    if names:
        for name in names:
            layer = by_prefix.get(name)
            expect = chain[-1].out_features if chain else width
            if layer is None or layer.in_features != expect:
                fitting = [g.describe() for g in linears if g.in_features == expect]
                raise ReadError(f"--head {hint}: no Linear '{name}' taking {expect} inputs; candidates: "
                                      f"{', '.join(fitting) or 'none'}")
            chain.append(layer)
    else:
        first = [g for g in after if g.in_features == width]
        if len(first) > 1:
            # Two of them may chain (Linear(W, W) -> Linear(W, n)): a head --head can name. Otherwise
            # several modules read the LSTM (attention pooling): outside the pure-stack shape.
            chainable = any(a.out_features == b.in_features and a.position < b.position for a in first for b in first)
            problem = (f"several Linear layers take the LSTM's {width} outputs: "
                       f"{', '.join(g.describe() for g in first)}; pass --head NAME")
            if chainable:
                raise ReadError(problem)
            raise OutsideNeutralShapeError(problem, f"Linear '{first[1].prefix}'")
        chain = first
    while chain and len(names) <= 1:  # follow the chain in key order while exactly one layer continues it
        nxt = [g for g in after if g.position >= chain[-1].position and g.in_features == chain[-1].out_features
               and g not in chain]
        if len(nxt) > 1:
            raise ReadError(f"several Linear layers could follow '{chain[-1].prefix}': "
                                  f"{', '.join(g.describe() for g in nxt)}; list the head with --head A,B")
        if not nxt:
            break
        chain.append(nxt[0])
    return [g.prefix for g in chain]
