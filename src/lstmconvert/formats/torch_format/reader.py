"""``read``: a PyTorch file -> neutral model.

State_dicts and training checkpoints (.pt/.pth/.ckpt/.bin), TorchScript
archives and .pt2 programs; ``checkpoint`` opens them safely, ``discover`` finds the structure in the
names and shapes, ``module_tree`` adds what a file holding modules records besides.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

from ...errors import OutsideNeutralShapeError, ReadError
from ...model import HEAD_ACTIVATIONS, Dense, Embedding, LSTMDirection, LSTMLayer, SequenceModel
from ...options import ReadHints
from .checkpoint import Checkpoint, load_checkpoint
from .config import SequenceLSTMConfig, parse_metadata_blob
from .discover import discover, split_head_hint
from .module_tree import embedding_padding_idx, embedding_problem, lstm_batch_first, sequential_activations
from .naming import FIELD_NAMES, Naming, join, lstm_key
from .tensors import exclusive_keys, to_numpy

# Buffers a module may carry that say nothing about the computation (BatchNorm's step counter).
IGNORED_SUFFIXES = ("num_batches_tracked",)


def read(path: Path, hints: ReadHints) -> SequenceModel:
    """Read a PyTorch LSTM model; see ``checkpoint`` (safety) and ``discover`` (structure)."""
    checkpoint = load_checkpoint(path)
    if hints.lstm is not None:
        _keep_lstm_alone(path, checkpoint, hints)
    config: Optional[SequenceLSTMConfig] = None
    if checkpoint.blob is not None:
        try:
            config, naming = parse_metadata_blob(checkpoint.blob)
        except (ValueError, KeyError, TypeError) as exc:
            raise ReadError(f"damaged lstmconvert metadata ({exc})") from exc
    else:
        shapes = {key: tuple(t.shape) for key, t in checkpoint.tensors.items()}
        naming = discover(shapes, hints, checkpoint.ordered)
    used = _used_keys(checkpoint, naming)
    _refuse_leftovers(path, checkpoint, used)
    problem = embedding_problem(checkpoint.tree, naming.embedding)
    if problem:
        raise ReadError(problem)
    activations = _head_activations(naming, config, hints, checkpoint)
    exclusive = exclusive_keys(checkpoint.tensors)  # their memory is taken over, not copied
    arrays = {key: to_numpy(checkpoint.tensors[key], key, key in exclusive) for key in used}
    model = _build(naming, arrays, config, hints, checkpoint, activations)
    if hints.lstm is not None:
        model.meta["lstm_alone"] = hints.lstm
    return model


def _keep_lstm_alone(path: Path, checkpoint: Checkpoint, hints: ReadHints) -> None:
    """Narrow the checkpoint to one nn.LSTM (``hints.lstm``), read as a pure model taking features."""
    from .edit_plan import lstm_list, modules_of, normalise

    if hints.embedding is not None or hints.head is not None:
        raise ReadError(path, "--embedding/--head do not apply when --lstm reads one LSTM alone")
    modules = modules_of(path, checkpoint.tensors)
    module = modules.get(normalise(hints.lstm))
    if module is None or module.kind != "LSTM":
        raise ReadError(path, f"--lstm {hints.lstm}: no nn.LSTM under that prefix; LSTM prefixes found: "
                              f"{lstm_list(modules)}")
    checkpoint.tensors = {key: checkpoint.tensors[key] for key in module.keys}
    checkpoint.other, checkpoint.blob = [], None


def _used_keys(checkpoint: Checkpoint, naming: Naming) -> list:
    """Every key the naming points at, in file order; ReadError if a required one is missing."""
    tensors = checkpoint.tensors
    required, optional = [], []
    if naming.embedding is not None:
        required.append(join(naming.embedding, "weight"))
    for slot in naming.layers:
        required += [lstm_key(slot.module, p, slot.index, False) for p in ("weight_ih", "weight_hh")]
        optional += [lstm_key(slot.module, p, slot.index, rev) for rev in (False, True) for p in FIELD_NAMES]
    for prefix in naming.head:
        required.append(join(prefix, "weight"))
        optional.append(join(prefix, "bias"))
    missing = [k for k in required if k not in tensors]
    if missing:
        raise ReadError(f"lacks {', '.join(missing)}, which its lstmconvert metadata names")
    wanted = set(required) | set(optional)
    return [k for k in tensors if k in wanted]


def _refuse_leftovers(path: Path, checkpoint: Checkpoint, used: list) -> None:
    """Refuse tensors that are not part of embedding -> LSTM -> head rather than drop them.

    A module with more layers (a normalisation, a second branch...) would compute something else
    once converted; only step-counter buffers, which do not take part in the computation, pass.
    """
    taken = set(used)
    leftover = [k for k in checkpoint.tensors if k not in taken and not k.endswith(IGNORED_SUFFIXES)]
    leftover += checkpoint.other
    if leftover:
        shown = ", ".join(leftover[:8]) + (f" and {len(leftover) - 8} more" if len(leftover) > 8 else "")
        # Other layers make it a model to widen in place; a non-tensor entry or a weight-normed head does not.
        layer = None if _weight_norm_note(leftover) else _layer_of(path, checkpoint, leftover[0])
        error = ReadError if layer is None else functools.partial(OutsideNeutralShapeError, layer=layer)
        raise error(
            f"has entries outside embedding -> LSTM -> Linear head: {shown}; lstmconvert refuses the file rather "
            "than drop layers it cannot carry (if these are the embedding or head, name them with --embedding/--head)"
            + _weight_norm_note(leftover),
        )


def _layer_of(path: Path, checkpoint: Checkpoint, key: str) -> Optional[str]:
    """"Conv1d 'conv'" for a tensor key (its module's kind as the shapes tell), None for a non-tensor entry."""
    if key not in checkpoint.tensors:
        return None
    from .edit_plan import modules_of

    for prefix, module in modules_of(path, checkpoint.tensors).items():
        if key in module.keys:
            return f"{module.kind} '{prefix or '<root>'}'"
    return None


def _weight_norm_note(keys: list) -> str:
    """A hint for torch.nn.utils.weight_norm's split weights (``X.weight_g`` and ``X.weight_v``)."""
    split = [k[: -len("_g")] for k in keys if k.endswith("_g") and f"{k[:-len('_g')]}_v" in keys]
    if not split:
        return ""
    return (f"; {split[0]}_g/_v are torch.nn.utils.weight_norm's halves of {split[0]}, computed in your module: "
            "call torch.nn.utils.remove_weight_norm on it and save the state_dict again")


def _head_activations(naming: Naming, config: Optional[SequenceLSTMConfig], hints: ReadHints,
                      checkpoint: Checkpoint) -> list:
    """The activation after each head layer; ReadError when the file and the hints leave it open.

    A state_dict records no activations. lstmconvert's own files store them; a
    TorchScript archive shows them when the head is an nn.Sequential; otherwise ``--head A:relu,B``
    says what the user's forward applies. A head of several layers is refused without one of
    these: reading it as purely linear would quietly compute something else than the user's model.
    """
    head = list(naming.head)
    given = dict(split_head_hint(hints.head))
    if any(activation is not None for activation in given.values()):
        unknown = {a for a in given.values() if a is not None and a not in HEAD_ACTIVATIONS}
        if unknown:
            raise ReadError(f"--head {hints.head}: unknown activation {', '.join(sorted(unknown))}; "
                                  f"lstmconvert's head layers use {', '.join(HEAD_ACTIVATIONS)}")
        missing = [name for name in head[:-1] if given.get(name) is None]
        if missing:
            raise ReadError(f"--head {hints.head}: give the activation after {', '.join(missing)} too "
                                  f"(e.g. {missing[0]}:relu, or {missing[0]}:linear for none)")
        return [given.get(name) or "linear" for name in head]
    if config is not None:
        return [layer.activation for layer in config.head]
    lstm_modules = sorted({slot.module for slot in naming.layers})
    try:
        found = sequential_activations(checkpoint.tree, head, lstm_modules)
    except ValueError as exc:
        raise ReadError(f"{exc}; lstmconvert refuses the file rather than drop it") from exc
    if found is not None:
        return found
    if len(head) > 1:
        example = ",".join(f"{name}:relu" for name in head[:-1]) + f",{head[-1]}"
        raise ReadError(
            f"head layers {' -> '.join(head)}: the file does not record what your module applies between them "
            f"(a state_dict holds no activations); name them with --head {example} "
            f"(activations: {', '.join(HEAD_ACTIVATIONS)}; 'linear' for none)",
        )
    return ["linear"] * len(head)


def _build(naming: Naming, arrays: dict, config: Optional[SequenceLSTMConfig], hints: ReadHints,
           checkpoint: Checkpoint, activations: list) -> SequenceModel:
    layers = []
    for k, slot in enumerate(naming.layers):
        directions = []
        for reverse in (False, True):
            if lstm_key(slot.module, "weight_ih", slot.index, reverse) not in arrays:
                continue
            fields = {FIELD_NAMES[p]: arrays.get(lstm_key(slot.module, p, slot.index, reverse)) for p in FIELD_NAMES}
            directions.append(LSTMDirection(**fields))
        facts = config.layers[k] if config is not None else None
        layers.append(LSTMLayer(
            directions=directions,
            merge=facts.merge if facts else "concat",  # nn.LSTM concatenates its two directions
            reverse=facts.reverse if facts else False,
            reversed_output=facts.reversed_output if facts else False,
        ))
    embedding = None
    if naming.embedding is not None:
        padding_idx = config.padding_idx if config else embedding_padding_idx(checkpoint.tree, naming.embedding)
        embedding = Embedding(arrays[join(naming.embedding, "weight")], padding_idx=padding_idx)
    head = [
        Dense(
            weight=arrays[join(prefix, "weight")],
            bias=arrays.get(join(prefix, "bias")),
            activation=activations[j],
        )
        for j, prefix in enumerate(naming.head)
    ]
    stored_batch_first = config.batch_first if config else _recorded_batch_first(naming, checkpoint)
    stored_readout = config.readout if config else None
    model = SequenceModel(
        layers=layers,
        embedding=embedding,
        head=head,
        input_kind="tokens" if embedding is not None else "features",
        batch_first=_pick(hints.batch_first, stored_batch_first, False),
        readout=_pick(hints.readout, stored_readout, "sequence"),
        masked=config.masked if config else False,
        mask_value=config.mask_value if config else 0.0,
        meta={"torch": {
            "naming": naming.to_dict(),
            "kind": checkpoint.kind,
            "container": checkpoint.container,
            "stripped_prefix": checkpoint.stripped,
            "module_versions": checkpoint.versions,
            "written_by_lstmconvert": config is not None,
            "not_loaded": checkpoint.stood_in,
        }},
    )
    # What nothing (no hint, no stored configuration, no nn.LSTM module) said: convert and inspect
    # state these, since a wrong guess would convert quietly into a model that computes something else.
    assumed = {}
    if hints.batch_first is None and stored_batch_first is None:
        assumed["batch_first"] = False
    if hints.readout is None and stored_readout is None:
        assumed["readout"] = "sequence"
    if assumed:
        model.meta["assumed"] = assumed
    return model


def _recorded_batch_first(naming: Naming, checkpoint: Checkpoint) -> Optional[bool]:
    """nn.LSTM's own batch_first, when the file holds the modules and all its LSTMs agree."""
    return lstm_batch_first(checkpoint.tree, sorted({slot.module for slot in naming.layers}))


def _pick(hint, stored, default):
    """An explicit hint wins over what the file stored, which wins over PyTorch's default."""
    if hint is not None:
        return hint
    return stored if stored is not None else default
