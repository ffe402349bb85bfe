"""Converting files and reporting what was written: one (``convert_file``) or many (``convert_many``).

``convert_file`` is what ``lstmconvert convert SRC -o DST`` does: load, cast if asked, widen (unless
``keep_direction``), save atomically, and describe the result (``ConversionResult``, also as JSON).
``convert_many`` converts several files into one folder, in worker processes when ``jobs > 1``, and goes
on past a file that fails: each file gets its own result, failed or not.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Union

from .errors import LstmConvertError
from .own_warnings import one_line, own_warnings
from .registry import FORMATS, format_for_path

PathLike = Union[str, os.PathLike]


@dataclass
class ConversionResult:
    """One file's conversion: what was written, what it keeps, what it assumed; or why it failed."""

    source: str
    target: str
    source_format: Optional[str] = None
    format: Optional[str] = None  # the target's
    mode: Optional[str] = None  # "bidirectional" or "format only"; None when it failed
    merge: Optional[str] = None
    backward: Optional[str] = None
    cast: Optional[str] = None  # "float32 -> bfloat16"
    written: List[dict] = field(default_factory=list)  # {"path": ..., "bytes": ...}
    preservation: Optional[dict] = None  # {"status": ..., "reason": ...}
    assumed: str = ""  # what the reader had to assume (summary.assumptions)
    warnings: List[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """"bidirectional, merge=concat, backward=copy" / "format only", and the cast if any."""
        text = "format only" if self.mode == "format only" else f"bidirectional, merge={self.merge}, backward={self.backward}"
        return f"{text}, weights cast {self.cast}" if self.cast else text

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def convert_file(
    src: PathLike,
    dst: PathLike,
    *,
    src_format: Optional[str] = None,
    dst_format: Optional[str] = None,
    backward: str = "copy",
    merge: str = "concat",
    preserve: bool = True,
    seed: int = 0,
    keep_direction: bool = False,
    dtype: Optional[str] = None,
    opset: Optional[int] = None,
    force: bool = False,
    **hints,
) -> ConversionResult:
    """Convert ``src`` into ``dst`` (widened unless ``keep_direction``); raise LstmConvertError on failure.

    Nothing is written unless the whole conversion succeeds, and ``dst`` may not be ``src`` (by any name).
    lstmconvert's warnings are collected in the result (and passed on to the warning handler).
    """
    from .api import load, refuse_overwriting_input, save
    from .convert import to_bidirectional
    from .summary import assumptions

    src, dst = Path(src), Path(dst)
    with own_warnings() as caught:
        if src.exists():
            refuse_overwriting_input(src, dst)
        model = load(src, format=src_format, **hints)
        if hints.get("lstm") and model.meta.get("lstm_alone") is None:
            raise LstmConvertError(f"{src}: --lstm with another target format reads one LSTM alone, which the "
                                   f"{model.meta.get('source_format')} reader does not do; widen in place instead "
                                   "(DST in the source's format)")
        result = ConversionResult(source=str(src), target=str(dst), source_format=model.meta.get("source_format"),
                                  format=format_for_path(dst, dst_format).name, assumed=assumptions(model))
        if dtype is not None and dtype != str(model.dtype):
            result.cast = f"{model.dtype} -> {dtype}"
            model = model.astype(_numpy_dtype(dtype))
        if keep_direction:
            result.mode = "format only"
        else:
            result.mode, result.merge, result.backward = "bidirectional", merge, backward
            try:
                model = to_bidirectional(model, backward=backward, merge=merge, preserve=preserve, seed=seed)
            except LstmConvertError as exc:
                if str(src) in str(exc):
                    raise
                raise LstmConvertError(f"{src}: {exc}") from exc
        written = save(model, dst, format=dst_format, force=force, opset=opset)
    result.written = [{"path": str(p), "bytes": p.stat().st_size} for p in written]
    verdict = model.meta.get("preservation")
    if verdict is not None:
        result.preservation = {"status": verdict.status, "reason": verdict.reason}
    result.warnings = list(caught)
    return result


def convert_many(
    sources: Iterable[PathLike],
    outdir: PathLike,
    *,
    to: str,
    jobs: int = 1,
    on_result: Optional[Callable[[ConversionResult], None]] = None,
    **options,
) -> List[ConversionResult]:
    """Convert every file in ``sources`` to ``outdir/<stem>.<extension of to>``; one result per source.

    Args:
        sources: model files of any readable format (mixed formats are fine).
        outdir: the output folder; created if missing.
        to: the target format ("torch", "keras" or "onnx").
        jobs: worker processes; 1 converts one file after another in this process.
        on_result: called with each result as it is ready (in completion order).
        **options: as for ``convert_file`` (backward, merge, keep_direction, dtype, opset, force, hints...).

    Returns:
        The results in the order of ``sources``. A file that fails has ``error`` set; the others are
        written regardless.

    Raises:
        LstmConvertError: before anything is converted, for a request that cannot work as a whole
        (an unknown format, two sources that would write the same output, an output folder that is a file).

    With ``jobs > 1`` the workers are started with the "spawn" method (no fork of a process that may
    hold framework threads), so a script calling this must guard its top level with
    ``if __name__ == "__main__":``.
    """
    sources = [Path(s) for s in sources]
    outdir = Path(outdir)
    targets = plan_outputs(sources, outdir, to)
    if jobs < 1:
        raise LstmConvertError(f"jobs must be at least 1, got {jobs}")
    if outdir.exists() and not outdir.is_dir():
        raise LstmConvertError(f"{outdir}: exists and is not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LstmConvertError(f"{outdir}: cannot create the output folder: {exc.strerror or exc}") from exc
    options = {**options, "dst_format": to}
    results: dict = {}

    def done(index: int, result: ConversionResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    if jobs == 1 or len(sources) == 1:
        for index, (src, dst) in enumerate(zip(sources, targets)):
            done(index, _convert_quietly(src, dst, options))
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=min(jobs, len(sources)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_convert_quietly, src, dst, options): index
                       for index, (src, dst) in enumerate(zip(sources, targets))}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the worker process itself died (out of memory, a crash)
                    result = ConversionResult(str(sources[index]), str(targets[index]),
                                              error=f"{sources[index]}: the worker converting it died ({one_line(exc)})")
                done(index, result)
    return [results[i] for i in range(len(sources))]


def plan_outputs(sources: List[Path], outdir: Path, to: str) -> List[Path]:
    """``outdir/<stem><extension>`` per source; two sources that would write one file are refused."""
    if to not in FORMATS:
        raise LstmConvertError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    extension = FORMATS[to].extensions[0]
    targets = [outdir / f"{src.stem}{extension}" for src in sources]
    seen: dict = {}
    for src, dst in zip(sources, targets):
        if dst in seen:
            raise LstmConvertError(f"{src} and {seen[dst]} would both be written to {dst}; convert them separately")
        seen[dst] = src
    return targets


def _convert_quietly(src: Path, dst: Path, options: dict) -> ConversionResult:
    """One file of a batch: its failure becomes its result; its warnings stay in its result."""
    try:
        with own_warnings(emit=lambda _text: None):
            return convert_file(src, dst, **options)
    except LstmConvertError as exc:
        error = one_line(str(exc)) if str(src) in str(exc) else f"{src}: {one_line(str(exc))}"
    except Exception as exc:  # a bug on one file must not stop the others; its result says what happened
        error = f"{src}: internal error: {type(exc).__name__}: {one_line(str(exc))}"
    return ConversionResult(source=str(src), target=str(dst), error=error)


def _numpy_dtype(name: str):
    if name == "bfloat16":  # numpy has no bfloat16 of its own
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name
