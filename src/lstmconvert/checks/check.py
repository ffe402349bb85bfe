"""``verify``: run two model files in their own runtimes on the same inputs and compare.

SRC's runtime output is the reference; DST must reproduce it ("same"), or, for a widening that
could not preserve the function, DST's forward half must ("forward-half"). Numbers always come from
the frameworks (torch, keras, onnxruntime) through each format's ``run``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .. import progress
from ..api import load, run_loaded
from ..errors import LstmConvertError, MissingDependencyError
from ..model import SequenceModel
from ..registry import FormatInfo, format_for_path
from .compare import Tolerance, default_tolerance, error_stats, real_step_mask, select_compared
from .diagnose import diagnose as run_diagnosis
from .inputs import InputCase, make_inputs
from .report import CaseResult, VerifyReport

PathLike = Union[str, os.PathLike]
EXPECTS = ("same", "forward-half")


@dataclass
class LoadedFile:
    """A model file, what lstmconvert read from it, and the format that runs it."""

    path: Path
    model: SequenceModel
    info: FormatInfo
    _outputs: dict = field(default_factory=dict, repr=False)  # a source is run once per input

    @classmethod
    def open(cls, path: PathLike, format: Optional[str] = None, **hints) -> "LoadedFile":
        path = Path(path)
        info = format_for_path(path, format)
        return cls(path, load(path, format=format, **hints), info)

    def run(self, data: np.ndarray) -> np.ndarray:
        """The file's output in its own framework's runtime (remembered per input batch)."""
        key = (data.shape, data.dtype.str, data.tobytes())
        if key not in self._outputs:
            with progress.phase(f"running {self.path.name}"):
                self._outputs[key] = np.asarray(run_loaded(self.path, self.model, data, format=self.info.name))
        return self._outputs[key]


@dataclass(frozen=True)
class Settings:
    """How to check: input seed and shapes, tolerances (None: by dtype)."""

    seed: int = 0
    atol: Optional[float] = None
    rtol: Optional[float] = None
    batch_sizes: Optional[tuple] = None
    steps: Optional[tuple] = None

    @classmethod
    def make(cls, seed: int = 0, atol: Optional[float] = None, rtol: Optional[float] = None,
             batch_sizes: Optional[Sequence[int]] = None, steps: Optional[Sequence[int]] = None) -> "Settings":
        """Settings from user values (any integer sequences for the shapes)."""
        return cls(seed, atol, rtol, _sizes(batch_sizes), _sizes(steps))

    def inputs(self, model: SequenceModel) -> list:
        return make_inputs(model, self.seed, self.batch_sizes, self.steps)

    def fitted(self, source: LoadedFile, target: LoadedFile) -> tuple:
        """These settings, with each size left to the default taken from a file that runs only at one size
        (``meta["fixed_sizes"]``); and a note saying so, or ""."""
        sizes, notes = {"batch": self.batch_sizes, "steps": self.steps}, []
        for axis in sizes:
            if sizes[axis] is not None:
                continue
            fixed: dict = {}  # size -> the files fixed at it
            for loaded, name in ((source, "SRC"), (target, "DST")):
                size = (loaded.model.meta.get("fixed_sizes") or {}).get(axis)
                if size is not None:
                    fixed.setdefault(size, []).append(name)
            if len(fixed) == 1:  # two different fixed sizes: no shared input exists; running says so
                ((size, names),) = fixed.items()
                sizes[axis] = (size,)
                notes.append(f"{'batch size' if axis == 'batch' else 'length'} {size}, the only one "
                             f"{' and '.join(names)} run{'s' if len(names) == 1 else ''} at")
        if not notes:
            return self, ""
        return replace(self, batch_sizes=sizes["batch"], steps=sizes["steps"]), "; ".join(notes)


@dataclass
class Observation:
    """One input batch and what both runtimes returned (``dst`` is None if DST failed to run)."""

    case: InputCase
    src: np.ndarray
    dst: Optional[np.ndarray]


def verify(
    src: PathLike,
    dst: PathLike,
    *,
    expect: Optional[str] = None,
    seed: int = 0,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    batch_sizes: Optional[Sequence[int]] = None,
    steps: Optional[Sequence[int]] = None,
    src_format: Optional[str] = None,
    dst_format: Optional[str] = None,
    diagnose: bool = True,
    **hints,
) -> VerifyReport:
    """Check in the real runtimes that ``dst`` computes what ``src`` computes.

    Args:
        src, dst: model files (.pt/.pth/.pt2, .keras/.h5, .onnx).
        expect: "same" (DST's output equals SRC's), "forward-half" (DST's output is twice as wide and
            its first half equals SRC's) or None to work it out from the two models.
        seed: seed of the random inputs.
        atol, rtol: tolerances; default by dtype (see ``compare.DEFAULT_TOLERANCES``).
        batch_sizes, steps: input shapes to use instead of the defaults (every combination), for
            files that only run at some shapes.
        src_format, dst_format: override the formats the extensions imply.
        diagnose: on a mismatch, test the usual conversion bugs against DST's numbers.
        **hints: read hints for PyTorch files (embedding, head, batch_first, readout).

    Returns:
        A VerifyReport; ``report.passed`` is False on any mismatch.

    Raises:
        LstmConvertError: a file cannot be read or run, or the two models take different inputs.

    Example:
        >>> report = verify("tagger.pt", "tagger_bi.onnx")
        >>> assert report.passed, report.render_text()
    """
    try:
        source = LoadedFile.open(src, src_format, **hints)
        # The read hints describe a PyTorch file; a DST whose format records its own layout takes none.
        target = LoadedFile.open(dst, dst_format, **(hints if format_for_path(dst, dst_format).read_hints else {}))
    except LstmConvertError as exc:  # a model outside the neutral shape is checked as a whole file
        from .whole_model import applies, verify_whole

        module = applies(exc, Path(src), Path(dst), src_format, dst_format)
        if module is None:
            raise
        if hints:
            given = ", ".join(f"--{name.replace('_', '-')}" for name in hints)
            raise LstmConvertError(f"{src}: {given} does not apply: the files hold more than an LSTM stack, so "
                                   "verify runs them whole, as they are") from exc
        return verify_whole(module, Path(src), Path(dst), expect=expect, seed=seed, atol=atol, rtol=rtol,
                            batch_sizes=batch_sizes, steps=steps)
    settings = Settings.make(seed, atol, rtol, batch_sizes, steps)
    return verify_loaded(source, target, expect=expect, settings=settings, diagnose=diagnose)


def verify_loaded(
    source: LoadedFile,
    target: LoadedFile,
    *,
    expect: Optional[str] = None,
    settings: Settings = Settings(),
    diagnose: bool = True,
) -> VerifyReport:
    """``verify`` on files already loaded (roundtrip and tests reuse a loaded source)."""
    check_same_inputs(source, target)
    settings, inputs_note = settings.fitted(source, target)
    expect, reason = resolve_expect(source.model, target.model, expect)
    tol = default_tolerance(source.model.dtype, target.model.dtype, atol=settings.atol, rtol=settings.rtol)
    report = VerifyReport(
        src=str(source.path), dst=str(target.path), src_format=source.info.name, dst_format=target.info.name,
        expect=expect, expect_reason=reason, tolerance=tol, seed=settings.seed, inputs_note=inputs_note,
    )
    observations = []
    for case in settings.inputs(source.model):
        expected = run_source(source, case)
        try:
            actual = target.run(case.data)
        except MissingDependencyError:
            raise
        except Exception as exc:  # DST was read but does not run: the conversion failed
            report.cases.append(CaseResult(case.label(), error=f"DST failed to run: {_one_line(exc)}"))
            observations.append(Observation(case, expected, None))
            continue
        report.cases.append(compare_case(case, expected, actual, expect, tol, source.model))
        observations.append(Observation(case, expected, actual))
    if not report.passed and diagnose:
        report.diagnosis = run_diagnosis(source.model, target.model, observations, expect)
    return report


def check_same_inputs(source: LoadedFile, target: LoadedFile) -> None:
    """Raise unless DST accepts exactly the inputs SRC accepts."""
    a, b = source.model, target.model
    if a.input_kind != b.input_kind:
        raise LstmConvertError(f"{target.path} takes {b.input_kind} but {source.path} takes {a.input_kind}")
    if a.input_kind == "tokens" and a.embedding.vocab_size != b.embedding.vocab_size:
        raise LstmConvertError(
            f"{target.path} has a vocabulary of {b.embedding.vocab_size} but {source.path} of {a.embedding.vocab_size}"
        )
    if a.input_kind == "features" and a.input_size != b.input_size:
        raise LstmConvertError(f"{target.path} takes {b.input_size} features but {source.path} takes {a.input_size}")


def resolve_expect(src: SequenceModel, dst: SequenceModel, expect: Optional[str]) -> tuple:
    """("same" | "forward-half", why): what DST should compute, given or worked out from both models."""
    src_width, dst_width = src.output_size, dst.output_size
    if expect is not None:
        if expect not in EXPECTS:
            raise LstmConvertError(f"expect must be one of {', '.join(EXPECTS)}, not {expect!r}")
        wanted = src_width if expect == "same" else 2 * src_width
        if dst_width != wanted:
            raise LstmConvertError(
                f"expect {expect} needs DST's output to be {wanted} wide, but it is {dst_width} (SRC's is {src_width})"
            )
        return expect, "as requested"
    if src_width == dst_width:
        return "same", f"both outputs are {src_width} wide"
    last_src, last_dst = src.layers[-1], dst.layers[-1]
    widened = (
        dst_width == 2 * src_width
        and not dst.head
        and last_dst.bidirectional
        and last_dst.merge == "concat"
        and not last_src.bidirectional
    )
    if widened:
        return "forward-half", (
            f"DST ends in a bidirectional LSTM whose concatenated output is {dst_width} wide, "
            f"twice SRC's unidirectional {src_width}"
        )
    raise LstmConvertError(
        f"cannot tell what DST should compute: its output is {dst_width} wide and SRC's {src_width}; "
        "pass --expect same or --expect forward-half"
    )


def compare_case(
    case: InputCase, expected: np.ndarray, actual: np.ndarray, expect: str, tol: Tolerance, model: SequenceModel
) -> CaseResult:
    """Compare one batch: shapes first, then the values at real (non-padding) steps."""
    selected = select_compared(actual, expected.shape, expect)
    if selected is None:
        return CaseResult(case.label(), error=f"DST output shape {tuple(actual.shape)} does not fit SRC's {tuple(expected.shape)}"
                          + (" (expect forward-half)" if expect == "forward-half" else ""))
    return CaseResult(case.label(), stats=error_stats(expected, selected, tol, where=real_step_mask(case, model)))


def run_source(source: LoadedFile, case: InputCase) -> np.ndarray:
    """SRC's runtime output on one batch; any failure is bad input (LstmConvertError)."""
    try:
        out = source.run(case.data)
    except MissingDependencyError:
        raise
    except Exception as exc:
        problem = exc.problem if isinstance(exc, LstmConvertError) else _one_line(exc)
        raise LstmConvertError(
            f"SRC failed to run on input {case.label()}: {problem} "
            "(if the file only runs at some shapes, choose them with --batch/--steps)"
        ).at(source.path) from exc
    n, t = case.data.shape[:2]
    width = source.model.output_size
    wanted = (n, t, width) if source.model.readout == "sequence" else (n, width)
    if tuple(out.shape) != wanted:
        raise LstmConvertError(
            f"{source.path}: its runtime returned shape {tuple(out.shape)} for input {case.label()}, expected {wanted}"
        )
    return out


def _sizes(values: Optional[Sequence[int]]) -> Optional[tuple]:
    return None if values is None else tuple(int(v) for v in values)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
