"""``read``: a PyTorch file -> neutral model.

State_dicts and training checkpoints (.pt/.pth/.ckpt/.bin), TorchScript
archives and .pt2 programs; ``checkpoint`` opens them safely, ``discover`` finds the structure in the
names and shapes, ``module_tree`` adds what a file holding modules records besides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...errors import ReadError
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
    config: Optional[SequenceLSTMConfig] = None
    if checkpoint.blob is not None:
        try:
            config, naming = parse_metadata_blob(checkpoint.blob)
        except (ValueError, KeyError, TypeError) as exc:
            raise ReadError(path, f"damaged lstmconvert metadata ({exc})") from exc
    else:
        shapes = {key: tuple(t.shape) for key, t in checkpoint.tensors.items()}
        naming = discover(path, shapes, hints, checkpoint.ordered)
    used = _used_keys(path, checkpoint, naming)
    _refuse_leftovers(path, checkpoint, used)
    problem = embedding_problem(checkpoint.tree, naming.embedding)
    if problem:
        raise ReadError(path, problem)
    activations = _head_activations(path, naming, config, hints, checkpoint)
    exclusive = exclusive_keys(checkpoint.tensors)  # their memory is taken over, not copied
    arrays = {key: to_numpy(checkpoint.tensors[key], key, key in exclusive) for key in used}
    return _build(naming, arrays, config, hints, checkpoint, activations)


def _used_keys(path: Path, checkpoint: Checkpoint, naming: Naming) -> list:
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
        raise ReadError(path, f"lacks {', '.join(missing)}, which its lstmconvert metadata names")
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
        raise ReadError(
            path,
            f"has entries outside embedding -> LSTM -> Linear head: {shown}; lstmconvert refuses the file rather "
            "than drop layers it cannot carry (if these are the embedding or head, name them with --embedding/--head)"
            + _weight_norm_note(leftover),
        )


def _weight_norm_note(keys: list) -> str:
    """A hint for torch.nn.utils.weight_norm's split weights (``X.weight_g`` and ``X.weight_v``)."""
    split = [k[: -len("_g")] for k in keys if k.endswith("_g") and f"{k[:-len('_g')]}_v" in keys]
    if not split:
        return ""
    return (f"; {split[0]}_g/_v are torch.nn.utils.weight_norm's halves of {split[0]}, computed in your module: "
            "call torch.nn.utils.remove_weight_norm on it and save the state_dict again")


def _head_activations(path: Path, naming: Naming, config: Optional[SequenceLSTMConfig], hints: ReadHints,
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
            raise ReadError(path, f"--head {hints.head}: unknown activation {', '.join(sorted(unknown))}; "
                                  f"lstmconvert's head layers use {', '.join(HEAD_ACTIVATIONS)}")
        missing = [name for name in head[:-1] if given.get(name) is None]
        if missing:
            raise ReadError(path, f"--head {hints.head}: give the activation after {', '.join(missing)} too "
                                  f"(e.g. {missing[0]}:relu, or {missing[0]}:linear for none)")
        return [given.get(name) or "linear" for name in head]
    if config is not None:
        return [layer.activation for layer in config.head]
    lstm_modules = sorted({slot.module for slot in naming.layers})
    try:
        found = sequential_activations(checkpoint.tree, head, lstm_modules)
    except ValueError as exc:
        raise ReadError(path, f"{exc}; lstmconvert refuses the file rather than drop it") from exc
    if found is not None:
        return found
    if len(head) > 1:
        example = ",".join(f"{name}:relu" for name in head[:-1]) + f",{head[-1]}"
        raise ReadError(
            path,
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
    return SequenceModel(
        layers=layers,
        embedding=embedding,
        head=head,
        input_kind="tokens" if embedding is not None else "features",
        batch_first=_pick(hints.batch_first, config.batch_first if config else _recorded_batch_first(naming, checkpoint),
                          False),
        readout=_pick(hints.readout, config.readout if config else None, "sequence"),
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


def _recorded_batch_first(naming: Naming, checkpoint: Checkpoint) -> Optional[bool]:
    """nn.LSTM's own batch_first, when the file holds the modules and all its LSTMs agree."""
    return lstm_batch_first(checkpoint.tree, sorted({slot.module for slot in naming.layers}))


def _pick(hint, stored, default):
    """An explicit hint wins over what the file stored, which wins over PyTorch's default."""
    if hint is not None:
        return hint
    return stored if stored is not None else default
