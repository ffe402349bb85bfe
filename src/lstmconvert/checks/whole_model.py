"""``verify`` for models outside ``[Embedding] -> LSTM stack -> [Dense head]``: the whole file, as it is.

When a file holds layers the neutral model cannot (a conv front end, attention pooling, several
inputs or outputs), ``verify`` cannot feed it through the neutral model's single input. If the
format can run its whole graph (``signature`` + ``run_graph``), both files run on seeded inputs
made from SRC's own input signature, and every output is compared; an output that an in-place
widening made wider is compared on its forward features (where the format records them, else its
leading ones). A format with no runtime for such files (a PyTorch state_dict holds no forward
code) may offer ``prove_edit`` instead: a structural proof, reported as such.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import LstmConvertError, MissingDependencyError, OutsideNeutralShapeError, UnsupportedError
from ..registry import format_for_path, format_module
from .compare import default_tolerance, error_stats
from .report import CaseResult, VerifyReport

# (batch size, steps) of the default cases: a batch of one, a single step, and longer ones.
_DEFAULT_CASES = ((1, 1), (1, 6), (3, 4), (2, 9))


def applies(exc: BaseException, src: Path, dst: Path, src_format: Optional[str], dst_format: Optional[str]):
    """The format module to check whole files with, if ``exc`` says a file is outside the neutral shape.

    That is an ``OutsideNeutralShapeError`` from a reader, or any refusal of what a graph holds (an
    UnsupportedError, never damaged bytes) when DST records that it was widened in place.
    """
    chain, outside, refused = exc, False, False
    while chain is not None:
        outside = outside or isinstance(chain, OutsideNeutralShapeError)
        refused = refused or isinstance(chain, UnsupportedError)
        chain = chain.__cause__
    if not refused:
        return None
    try:
        info, other = format_for_path(Path(src), src_format), format_for_path(Path(dst), dst_format)
    except LstmConvertError:
        return None
    if info.name != other.name:
        return None
    try:
        module = format_module(info)
    except LstmConvertError:  # its framework is missing: the reader's own error says more
        return None
    if not outside and not (hasattr(module, "edited_in_place") and Path(dst).is_file()
                            and module.edited_in_place(Path(dst))):
        return None
    if (hasattr(module, "run_graph") and hasattr(module, "signature")) or hasattr(module, "prove_edit"):
        return module
    return None


def verify_whole(module, src: Path, dst: Path, *, expect: Optional[str] = None, seed: int = 0,
                 atol: Optional[float] = None, rtol: Optional[float] = None,
                 batch_sizes: Optional[Sequence[int]] = None, steps: Optional[Sequence[int]] = None):
    """A VerifyReport (whole graphs run) or a ProofReport (structural proof) for ``src`` -> ``dst``."""
    src, dst = Path(src), Path(dst)
    info = format_for_path(src)
    if expect not in (None, "same", "forward-half"):
        raise LstmConvertError(f"expect must be same or forward-half, not {expect!r}")
    if not hasattr(module, "run_graph"):
        from ..options import EditRequest

        passed, lines = module.prove_edit(src, dst, EditRequest())
        return ProofReport(str(src), str(dst), info.name, bool(passed), list(lines))
    signature = module.signature(src)
    _check_same_signature(src, dst, signature, module.signature(dst))
    for name, shape, _ in signature:  # an empty input has nothing to compare (and aborts some runtimes)
        if any(dim is not None and dim <= 0 for dim in shape):
            raise LstmConvertError(f"input {name!r} declares shape {tuple(shape)}, with an axis of size "
                                   "0 or less; there is nothing to run it on").at(src)
    # Optional facts a format may offer about its graphs (ONNX offers them all).
    placed = module.widened_outputs(dst) if hasattr(module, "widened_outputs") and expect != "same" else {}
    names = module.output_names(dst) if hasattr(module, "output_names") else None
    draw = _Inputs(module, src, signature, np.random.default_rng(seed))
    cases = list(_DEFAULT_CASES)
    if batch_sizes or steps:  # every combination, as for neutral models
        cases = [(n, t) for n in (batch_sizes or (1, 3)) for t in (steps or (1, 6))]
    report = None
    for n, t in cases:
        feed = draw(n, t)
        label = "(" + ", ".join(f"{name} {tuple(a.shape)}" for name, a in feed.items()) + ")"
        expected = _run(module, src, feed, label)
        report = report or _report(src, dst, info.name, expected, atol, rtol, seed)
        try:
            actual = module.run_graph(dst, feed)
        except MissingDependencyError:
            raise
        except Exception as exc:
            report.cases.append(CaseResult(label, error=f"DST failed to run: {' '.join(str(exc).split())[:300]}"))
            continue
        if len(actual) != len(expected):
            report.cases.append(CaseResult(label, error=f"DST has {len(actual)} outputs, SRC {len(expected)}"))
            continue
        for k, (want, got) in enumerate(zip(expected, actual)):
            name = names[k] if names and k < len(names) else f"output {k}"
            report.cases.append(_compare(report, f"{name} {label}", np.asarray(want), np.asarray(got),
                                         placed.get(name), expect != "same"))
    return report


class _Inputs:
    """Seeded inputs from a graph's own signature (see ``_sizes`` and ``_draw``)."""

    def __init__(self, module, path: Path, signature: list, rng: np.random.Generator) -> None:
        self.signature, self.rng = signature, rng
        self.tables = module.token_ranges(path) if hasattr(module, "token_ranges") else {}
        self.axes = module.axis_names(path) if hasattr(module, "axis_names") else {}
        self.lengths = module.length_inputs(path) if hasattr(module, "length_inputs") else set()

    def __call__(self, n: int, t: int) -> dict:
        feed = {}
        for name, shape, dtype in self.signature:
            sizes = _sizes(shape, self.axes.get(name), n, t)
            feed[name] = (_lengths(self.rng, sizes, dtype, t) if name in self.lengths
                          else _draw(self.rng, sizes, dtype, self.tables.get(name)))
        return feed


def _compare(report: VerifyReport, where: str, want: np.ndarray, got: np.ndarray, placed: Optional[dict],
             allow_wider: bool) -> CaseResult:
    selected = forward_part(got, want.shape, placed, allow_wider=allow_wider)
    if selected is None:
        return CaseResult(where, error=f"DST output shape {tuple(got.shape)} does not fit SRC's {tuple(want.shape)}")
    if selected.shape != got.shape and report.expect == "same":
        report.expect = "forward-half"
        report.expect_reason += "; widened outputs compared on their forward features"
    return CaseResult(where, stats=error_stats(want, selected, report.tolerance))


def forward_part(actual: np.ndarray, expected_shape: tuple, placed: Optional[dict],
                 allow_wider: bool = True) -> Optional[np.ndarray]:
    """The part of a DST output that must equal SRC's: all of it, or its forward features if it is wider."""
    if tuple(actual.shape) == tuple(expected_shape):
        return actual
    if not allow_wider or actual.ndim != len(expected_shape):
        return None
    differing = [k for k, (a, b) in enumerate(zip(actual.shape, expected_shape)) if a != b]
    if len(differing) != 1 or actual.shape[differing[0]] < expected_shape[differing[0]]:
        return None
    axis, size = differing[0], expected_shape[differing[0]]
    if placed is None or placed.get("axis") != axis or placed.get("size") != size:
        return np.take(actual, range(size), axis=axis)  # [forward ‖ backward]: the forward part leads
    shift = np.zeros(size, dtype=np.int64)
    for start, width in placed["blocks"]:  # each block's backward twin follows it
        shift[start + width:] += width
    positions = np.arange(size) + shift
    if positions[-1] >= actual.shape[axis]:
        return None
    return np.take(actual, positions, axis=axis)


def _report(src, dst, fmt, expected, atol, rtol, seed) -> VerifyReport:
    floats = [o.dtype for o in expected if o.dtype.kind == "f"] or [np.dtype(np.float32)]
    return VerifyReport(src=str(src), dst=str(dst), src_format=fmt, dst_format=fmt, expect="same",
                        expect_reason=f"whole graphs run: every output compared ({len(expected)})",
                        tolerance=default_tolerance(*floats, atol=atol, rtol=rtol), seed=seed)


def _run(module, path: Path, feed: dict, label: str) -> list:
    try:
        return module.run_graph(path, feed)
    except MissingDependencyError:
        raise
    except Exception as exc:
        problem = " ".join((exc.problem if isinstance(exc, LstmConvertError) else str(exc)).split())[:300]
        raise LstmConvertError(f"SRC failed to run on input {label}: {problem} (if the file only runs at some "
                               "shapes, choose them with --batch/--steps)").at(path) from exc


def _check_same_signature(src: Path, dst: Path, a: list, b: list) -> None:
    if [(n, d) for n, _, d in a] != [(n, d) for n, _, d in b]:
        raise LstmConvertError(f"{dst} takes inputs {[(n, d) for n, _, d in b]} but {src} takes {[(n, d) for n, _, d in a]}")


_BATCH_NAMES = re.compile(r"^(n|b|bs|batch.*|.*_batch|n_?samples)$", re.IGNORECASE)
_STEP_NAMES = re.compile(r"^(t|l|s|seq.*|.*len.*|time.*|.*steps?|.*_time|frames?|tokens?)$", re.IGNORECASE)


def _sizes(shape: tuple, names: Optional[list], n: int, t: int) -> list:
    """Sizes for one input: a named unknown axis by its name (batch/time), else the first is the batch."""
    sizes, first = [], True
    names = names or [None] * len(shape)
    for dim, name in zip(shape, names):
        if dim is not None:
            sizes.append(dim)
            continue
        if name and _BATCH_NAMES.match(name):
            sizes.append(n)
        elif name and _STEP_NAMES.match(name):
            sizes.append(t)
        else:
            sizes.append(n if first else t)
        first = False
    return sizes


def _lengths(rng: np.random.Generator, sizes: list, dtype: str, steps: int) -> np.ndarray:
    """Sequence lengths in 1..steps, the first one full (so the batch really is ``steps`` long)."""
    lengths = rng.integers(1, steps + 1, size=sizes)
    lengths.reshape(-1)[:1] = steps
    return lengths.astype(dtype)


def _draw(rng: np.random.Generator, sizes: list, dtype: str, vocab: Optional[int]) -> np.ndarray:
    """One input of these sizes: token ids inside the table it indexes, small integers, or normal floats."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":  # token ids inside the table they index, else small non-negative integers
        return rng.integers(0, vocab if vocab else 2, size=sizes).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=sizes).astype(bool)
    return rng.standard_normal(sizes).astype(dtype if dtype.kind == "f" else np.float32)


@dataclass
class ProofReport:
    """A structural proof of an in-place widening (a file lstmconvert cannot run): what was checked."""

    src: str
    dst: str
    format: str
    passed: bool
    lines: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "src_format": self.format, "dst_format": self.format,
                "check": "structural proof", "passed": self.passed, "checked": list(self.lines)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self) -> str:
        lines = [f"verify {self.src} ({self.format}) -> {self.dst} ({self.format})",
                 "  structural proof (the file holds no code lstmconvert can run, so no outputs were computed):"]
        lines += [f"  - {line}" for line in self.lines]
        lines.append("PASS: the widening is function-preserving by construction" if self.passed
                     else "FAIL: the structural proof does not hold")
        return "\n".join(lines)
