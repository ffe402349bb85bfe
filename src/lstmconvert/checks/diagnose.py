"""Why does DST not compute what SRC computes? Test the usual suspects against the real numbers.

Each suspect (``suspects.model_suspects``) is a known conversion bug applied to a neutral model and
run through the numpy reference pass. A suspect is reported when its output reproduces DST's actual
runtime output far better than the correct model does. Two starting points are tried:

* SRC as read: the bug happened between SRC and DST (DST's file holds the wrong weights, or DST's
  runtime runs them wrongly).
* DST as read, when DST's runtime does not compute what lstmconvert reads from DST: the reader
  and the runtime disagree about the file (a writer and reader sharing one mistake, or a runtime
  wrapper bug), and the suspect says how the runtime differs.

The reference pass only ranks explanations; the pass/fail verdict always comes from the runtimes.
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from .. import reference
from ..model import SequenceModel
from .compare import default_tolerance, max_abs_error, real_step_mask, select_compared
from .suspects import Suspect, model_suspects
from .weights import identify_weight_changes

MAX_REPORTED = 3


def diagnose(src: SequenceModel, dst: SequenceModel, observations: list, expect: str) -> list:
    """Plain-language findings about a failed verify, most useful first."""
    findings = []
    ran = [o for o in observations if o.dst is not None]
    findings += _structure_notes(src, dst)
    if not ran:
        return findings + ["DST did not run on any input; see the errors above"]
    shaped = [o for o in ran if _fits(o, expect)]
    if not shaped:
        return findings + ["DST's output has the wrong shape on every input; compare readout and widths with `lstmconvert inspect`"]
    explain_tol = _explain_tolerance(src, dst)
    weight_findings = []

    # Can the reference pass reproduce SRC's runtime at all? If not, nothing below is trustworthy.
    src_err = max(max_abs_error(o.src, reference.forward(src, o.case.data), _where(o, src)) for o in shaped)
    if src_err > explain_tol * _scale(shaped, "src"):
        findings.append(
            f"SRC's runtime does not compute what lstmconvert reads from SRC (max abs {src_err:.3g}): the SRC "
            "reader or runtime wrapper may be wrong, so the suspects below are only a guess"
        )

    dst_err = max(max_abs_error(o.dst, reference.forward(dst, o.case.data), _where(o, dst)) for o in shaped)
    if dst_err > explain_tol * _scale(shaped, "dst"):
        findings.append(
            f"DST's runtime does not compute what lstmconvert reads from DST (max abs {dst_err:.3g}): lstmconvert's "
            "reader and the runtime disagree about the file (a writer and reader sharing one mistake, or a "
            "runtime wrapper bug)"
        )
        findings += _best_suspects(dst, shaped, lambda o: o.dst, explain_tol, "DST's model as read", findings)
    else:
        weight_findings = _confirmed_weight_changes(src, dst, shaped, lambda o: _compared(o, expect), explain_tol)
        findings += weight_findings

    if not any(" — reproduces DST's output" in line for line in weight_findings):  # the weights did not explain it
        findings += _best_suspects(src, shaped, lambda o: _compared(o, expect), explain_tol, "SRC's model", findings)
    if not any(" — reproduces DST's output" in line for line in findings):
        findings.append(NOTHING_EXPLAINS)
    return _unique(findings)


NOTHING_EXPLAINS = ("none of the known bugs (gate blocks in another order, transposed matrices, biases swapped, dropped "
                    "or doubled, a direction from another layer, wrong time order, lost masking, swapped axes, "
                    "activation mix-ups) explains the mismatch; compare `lstmconvert inspect` of both files")


def _confirmed_weight_changes(src: SequenceModel, dst: SequenceModel, observations: list, target,
                              explain_tol: float) -> list:
    """What the weights say changed, replayed: SRC with DST's rearranged directions must give DST's output."""
    found = identify_weight_changes(src, dst)
    named = [(where, direction) for _, where, direction in found if direction is not None]
    if not named:
        return [text for text, _, _ in found]
    scale = max(float(np.max(np.abs(target(o)), initial=0.0)) for o in observations)
    limit = explain_tol * max(1.0, scale)
    base_err = _error(src, Suspect("correct"), observations, target)
    err = _error(src, Suspect("weights", rewrite=_substitute(named)), observations, target)
    together = " (with the other changes named here)" if len(named) > 1 else ""
    if err <= limit:
        tail = f" — reproduces DST's output{together} to {err:.2g}, where SRC's model is off by {base_err:.2g}"
    else:
        tail = f" (replaying it{together} does not reproduce DST's output: off by {err:.2g})"
    return [text + tail if direction is not None else text for text, _, direction in found]


def _substitute(named: list):
    def rewrite(model: SequenceModel) -> SequenceModel:
        layers = [copy.copy(layer) for layer in model.layers]
        for (k, d), direction in named:
            layers[k].directions = [direction if i == d else dr for i, dr in enumerate(layers[k].directions)]
        return model.replace(layers=layers)

    return rewrite


def _best_suspects(base: SequenceModel, observations: list, target, explain_tol: float, base_name: str,
                   already: list) -> list:
    """The suspects, applied to ``base``, that reproduce ``target(o)`` much better than ``base`` does
    (leaving out those already named in ``already``)."""
    scale = max(float(np.max(np.abs(target(o)), initial=0.0)) for o in observations)
    limit = explain_tol * max(1.0, scale)
    base_err = _error(base, Suspect("correct"), observations, target)
    scored = []
    for suspect in model_suspects(base):
        err = _error(base, suspect, observations, target)
        if err <= limit and err < 0.1 * base_err:
            scored.append((err, suspect.description))
    scored.sort(key=lambda pair: pair[0])
    if not scored:
        return []
    best = scored[0][0]
    picked = [d for e, d in scored if e <= max(2 * best, limit / 10)][:MAX_REPORTED]
    return [f"{d} — reproduces DST's output to {e:.2g}, where {base_name} is off by {base_err:.2g}"
            for e, d in scored if d in picked and not any(line.startswith(d + " — ") for line in already)]


def _error(base: SequenceModel, suspect: Suspect, observations: list, target) -> float:
    model = suspect.rewrite(base) if suspect.rewrite else base
    worst = 0.0
    for o in observations:
        data = o.case.data
        if suspect.swap_axes:
            data = np.swapaxes(data, 0, 1)
        try:
            out = reference.forward(model, data, suspect.deviation)
        except (ValueError, IndexError):  # a suspect that does not fit this input (e.g. swapped axes)
            return float("inf")
        if suspect.swap_axes:
            out = np.swapaxes(out, 0, 1)
        worst = max(worst, max_abs_error(target(o), out, _where(o, base)))
    return worst


def _structure_notes(src: SequenceModel, dst: SequenceModel) -> list:
    """Differences visible without running anything."""
    notes = []
    if src.readout != dst.readout:
        why = [f"{side} is a PyTorch state_dict, which cannot say what its module returns: pass --readout"
               for side, model in (("SRC", src), ("DST", dst)) if model.meta.get("source_format") == "torch"]
        notes.append(f"DST's readout is {dst.readout!r} but SRC's is {src.readout!r}" + (f" ({why[0]})" if why else ""))
    if src.masked != dst.masked:
        notes.append("SRC skips padding steps but DST does not" if src.masked else "DST skips padding steps but SRC does not")
    if len(src.layers) != len(dst.layers):
        notes.append(f"DST has {len(dst.layers)} LSTM layers, SRC {len(src.layers)}")
    for k, (a, b) in enumerate(zip(src.layers, dst.layers)):
        if a.reverse != b.reverse and len(a.directions) == len(b.directions) == 1:
            notes.append(f"layer {k}: DST's runs {'backward' if b.reverse else 'forward'} in time, SRC's "
                         f"{'backward' if a.reverse else 'forward'}")
        if b.bidirectional and not a.bidirectional and b.merge in ("sum", "ave", "mul"):
            backward = b.directions[1]
            if b.merge == "mul" or any(np.any(x != 0) for x in backward.arrays().values()):
                notes.append(
                    f"layer {k}: DST merges a non-zero backward direction with {b.merge!r}, which cannot preserve "
                    "SRC's function (convert with --merge concat, or --merge sum --backward zeros)"
                )
    return notes


def _explain_tolerance(src: SequenceModel, dst: SequenceModel) -> float:
    """How close a float64 reference run may come to a runtime and still count as 'the same'."""
    return 20 * default_tolerance(src.dtype, dst.dtype).atol


def _fits(o, expect: str) -> bool:
    return select_compared(o.dst, o.src.shape, expect) is not None


def _compared(o, expect: str) -> np.ndarray:
    return select_compared(o.dst, o.src.shape, expect)


def _where(o, model: SequenceModel) -> Optional[np.ndarray]:
    return real_step_mask(o.case, model)


def _scale(observations: list, side: str) -> float:
    return max(1.0, max(float(np.max(np.abs(getattr(o, side)), initial=0.0)) for o in observations))


def _unique(items: list) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
