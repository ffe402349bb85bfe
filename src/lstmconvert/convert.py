"""Unidirectional -> bidirectional, as a pure function on the neutral model.

Function preservation: the new backward direction's output reaches the rest of the network only
through weights lstmconvert controls, so they can be chosen to make the converted model compute what
the source computed:

* ``concat``: every consumer of a widened output (the next LSTM layer's input weights, the first head
  layer) gets zero columns for the backward half. Any backward initialisation preserves the function.
* ``sum``: an all-zero LSTM direction outputs exactly 0 (i = f = o = 0.5, g = tanh(0) = 0, so c and h
  stay 0), so ``backward="zeros"`` preserves the function.
* ``ave``: as ``sum``, and the consumers' weights are doubled so they undo the halving; doubling is
  exact in binary floating point. A last layer without a head has no consumer: its output is halved.
* ``mul``: cannot be made exact; a warning says so.

Forward weights are reused bit-for-bit, except the zero (or, with ``preserve=False``, fresh random)
columns appended to a consumer, and the doubling that ``ave`` needs.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from typing import Optional

from .capabilities import initialiser_style
from .errors import LstmConvertError
from .model import MERGE_MODES, Dense, LSTMLayer, SequenceModel
from .widening import Initialiser, backward_direction, widen_consumer

BACKWARD_INITS = ("copy", "random", "zeros")


class PreservationWarning(UserWarning):
    """The converted model will not compute exactly what the source computed."""


class UntrainableWarning(UserWarning):
    """The converted model's backward direction cannot learn from its starting point."""


@dataclass(frozen=True)
class Preservation:
    """What a conversion keeps of the source's function.

    ``status`` is "exact" (the converted model's outputs equal the source's), "forward-half" (its
    output is wider; the forward half equals the source's output) or "none". ``reason`` explains.
    """

    status: str
    reason: str


def check_convertible(model: SequenceModel) -> None:
    """Raise if ``model`` cannot be widened (every layer already bidirectional, reverse-only layers).

    Layers that are already bidirectional stay as they are; the unidirectional ones are widened.
    """
    if all(layer.bidirectional for layer in model.layers):
        which = "layer 0 is" if len(model.layers) == 1 else "every layer is"
        raise LstmConvertError(
            f"{which} already bidirectional; use --keep-direction (keep_direction=True) "
            "to convert formats without widening"
        )
    for k, layer in enumerate(model.layers):
        if layer.reverse:
            raise LstmConvertError(
                f"layer {k} runs backward only (go_backwards / direction='reverse'); only forward "
                "layers can be widened. Use --keep-direction to convert its format as it is"
            )


def preservation(
    model: SequenceModel, *, backward: str = "copy", merge: str = "concat", preserve: bool = True
) -> Preservation:
    """Tell, without converting, whether ``to_bidirectional`` with these options keeps the function."""
    check_options(backward, merge)
    n = len(model.layers)
    for k in _widened(model):
        consumer = f"layer {k + 1}" if k + 1 < n else ("the head" if model.head else None)
        if consumer is None:
            break
        problem = consumer_problem(merge, backward, preserve)
        if problem:
            return Preservation("none", f"{consumer}: {problem}")
    # The last layer's merged output is the model output when there is no head.
    if model.head or model.layers[-1].bidirectional:
        return Preservation("exact", exact_reason(merge))
    if merge == "concat":
        return Preservation(
            "forward-half",
            "the model ends in the LSTM, so its output doubles in width; the forward half equals the "
            "source's output (add a head, or use --merge sum --backward zeros, for an exact match)",
        )
    if merge == "sum" and backward == "zeros":
        return Preservation("exact", exact_reason(merge))
    if merge == "ave" and backward == "zeros":
        return Preservation("none", "merge 'ave' halves the last layer's output and there is no head to undo it")
    return Preservation("none", consumer_problem(merge, backward, preserve) or "")


def consumer_problem(merge: str, backward: str, preserve: bool) -> Optional[str]:
    if merge == "concat":
        return None if preserve else "--no-preserve gives the backward half random weights downstream"
    if merge == "mul":
        return "merge 'mul' multiplies the forward output by the backward one, which cannot be neutral"
    if backward != "zeros":
        return f"merge '{merge}' adds the backward output in; only --backward zeros makes that exact"
    if merge == "ave" and not preserve:
        return "merge 'ave' halves the output and --no-preserve leaves the consumer's weights as they are"
    return None


def exact_reason(merge: str) -> str:
    return {
        "concat": "consumers of the widened output get zero weights on the backward half",
        "sum": "the all-zero backward direction outputs exactly 0",
        "ave": "the all-zero backward direction outputs 0 and consumers' weights are doubled",
    }[merge]


def to_bidirectional(
    model: SequenceModel,
    *,
    backward: str = "copy",
    merge: str = "concat",
    preserve: bool = True,
    seed: int = 0,
) -> SequenceModel:
    """Return a bidirectional copy of a unidirectional ``model``.

    Args:
        model: a validated neutral model. Its unidirectional (forward) layers are widened; layers
            that are already bidirectional stay as they are (their input weights widened when they
            read a widened layer).
        backward: the new backward direction's weights: "copy" (of the forward direction),
            "random" (the source framework's standard initialisation, seeded) or "zeros".
        merge: how the two directions' outputs combine: "concat", "sum", "ave" or "mul".
        preserve: give consumers of the backward half zero weights (and undo ``ave``'s halving) so
            the converted model computes what the source did. False appends random weights instead.
        seed: seed for ``backward="random"`` and for ``preserve=False``.

    Returns:
        A new model; ``model`` is not modified. ``meta["preservation"]`` holds the Preservation.
        Arrays the conversion keeps unchanged (embedding, forward weights, a copied backward
        direction, head layers after the first) are shared, not copied: copy them before changing
        an array of either model in place.

    Example:
        >>> bi = to_bidirectional(load("tagger.pt"), backward="zeros", merge="concat")
    """
    check_options(backward, merge)
    model.validate()
    check_convertible(model)
    verdict = preservation(model, backward=backward, merge=merge, preserve=preserve)
    if verdict.status != "exact":
        warnings.warn(f"the converted model is not function-preserving: {verdict.reason}", PreservationWarning, stacklevel=2)

    if backward == "zeros" and merge == "concat" and preserve:
        # An all-zero direction outputs exactly 0 into zero consumer weights: every gradient that
        # reaches either is exactly 0, so fine-tuning never moves them (examples/warm_start.py).
        warnings.warn(
            "--backward zeros with --merge concat gives a backward direction that never trains (its "
            "output and the weights reading it are all zero, so their gradients are exactly 0); use "
            "--backward copy or random to fine-tune, or --merge sum with zeros",
            UntrainableWarning, stacklevel=2,
        )
    init = Initialiser(seed, style=initialiser_style(model.meta.get("source_format")))
    widened = set(_widened(model))
    layers = []
    for k, layer in enumerate(model.layers):
        directions = [copy.copy(d) for d in layer.directions]  # the source's arrays, reused as they are
        if k - 1 in widened:  # reads a widened output: every direction's input weights
            for direction in directions:
                direction.w_ih = widen_consumer(direction.w_ih, merge=merge, preserve=preserve, init=init,
                                                fan_in_rows=True)
        if k not in widened:  # already bidirectional: kept as it is
            layers.append(replace(layer, directions=directions))
            continue
        (forward,) = directions
        new_layer = LSTMLayer(
            directions=[forward, backward_direction(forward, backward, init)],
            merge=merge,
            clip=layer.clip,
            input_forget=layer.input_forget,
        )
        layers.append(new_layer)
    head = [copy.copy(d) for d in model.head]
    if head and len(model.layers) - 1 in widened:
        head[0] = Dense(
            weight=widen_consumer(head[0].weight, merge=merge, preserve=preserve, init=init),
            bias=head[0].bias,
            activation=head[0].activation,
        )
    meta = dict(model.meta)
    meta["preservation"] = verdict
    meta["conversion"] = {"backward": backward, "merge": merge, "preserve": preserve, "seed": seed}
    return model.replace(layers=layers, head=head, embedding=copy.copy(model.embedding), meta=meta).validate()


def _widened(model: SequenceModel) -> list:
    """The layers ``to_bidirectional`` widens: the unidirectional ones (a bidirectional layer stays)."""
    return [k for k, layer in enumerate(model.layers) if not layer.bidirectional]


def check_options(backward: str, merge: str) -> None:
    if backward not in BACKWARD_INITS:
        raise LstmConvertError(f"backward must be one of {', '.join(BACKWARD_INITS)}, not {backward!r}")
    if merge not in MERGE_MODES:
        raise LstmConvertError(f"merge must be one of {', '.join(MERGE_MODES)}, not {merge!r}")
