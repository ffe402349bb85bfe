"""``roundtrip``: write a model through each format and read it back, proving nothing was lost.

Each hop writes SRC as it is (no widening) to a file of one format, reads that file back and checks

* the weights: bit-exact by name (``SequenceModel.arrays()``); a format with one bias per gate
  (``Capabilities.biases == 1``) must hold exactly ``b_ih + b_hh``, the documented folding;
* the outputs: SRC in its runtime against the hop file in *its* runtime (``verify`` with "same").

A format that cannot carry the model (the writer raises ``UnsupportedError``, e.g. ``proj_size``
into Keras or ONNX) is a "skip" with the reason shown, unless that format was asked for by name in
``via``: then it is a failure, because the caller wanted proof for that format.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..api import load, save
from ..errors import LstmConvertError, MissingDependencyError, OutsideNeutralShapeError, UnsupportedError
from ..registry import FORMATS, format_for_path
from .check import LoadedFile, Settings, run_source, verify_loaded
from .report import HopResult, RoundtripReport
from .weights import exactness_problems

PathLike = Union[str, os.PathLike]

# What each name in ``via`` writes. Format names take their main extension; a bare extension picks
# the other containers (torch.export's .pt2, Keras's legacy .h5).
HOP_EXTENSIONS = {**{name: info.extensions[0] for name, info in FORMATS.items()}, "pt2": ".pt2", "h5": ".h5"}
DEFAULT_VIA = tuple(FORMATS)


def parse_via(via: Union[None, str, Iterable[str]]) -> tuple:
    """``"torch,onnx"`` or an iterable of names -> ((name, extension), ...); None -> the default three."""
    if via is None:
        names = list(DEFAULT_VIA)
    elif isinstance(via, str):
        names = [v.strip() for v in via.split(",") if v.strip()]
    else:
        names = [str(v).strip() for v in via]
    hops = []
    for name in names:
        key = name.lower().lstrip(".")
        if key in HOP_EXTENSIONS:
            extension = HOP_EXTENSIONS[key]
        elif any("." + key in info.extensions for info in FORMATS.values()):
            extension = "." + key
        else:
            choices = ", ".join(HOP_EXTENSIONS)
            raise LstmConvertError(f"unknown roundtrip format {name!r}; choose from {choices} (or an extension)")
        if (key, extension) not in hops:
            hops.append((key, extension))
    if not hops:
        raise LstmConvertError("--via names no format")
    return tuple(hops)


def roundtrip(
    src: PathLike,
    *,
    via: Union[None, str, Iterable[str]] = None,
    seed: int = 0,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    batch_sizes: Optional[Sequence[int]] = None,
    steps: Optional[Sequence[int]] = None,
    src_format: Optional[str] = None,
    keep: Optional[PathLike] = None,
    **hints,
) -> "RoundtripReport":
    """Write ``src`` through each format in ``via`` and check weights and runtime outputs come back.

    Args:
        src: the model file to round-trip.
        via: formats to go through ("torch", "keras", "onnx", or extensions such as "pt2", "h5"),
            as a comma-separated string or a list; None means torch, keras and onnx. A format named
            here that cannot carry the model fails the round trip; by default it is skipped.
        seed, atol, rtol, batch_sizes, steps: as for ``verify``.
        src_format: override the format the extension implies.
        keep: a folder to write the intermediate files into (kept); default a temporary folder.
        **hints: read hints for a PyTorch SRC.

    Returns:
        A RoundtripReport, one HopResult per format; ``report.passed`` is what the exit code reports.

    Example:
        >>> report = roundtrip("tagger.pt", via="keras,onnx")
        >>> print(report.render_text())
    """
    explicit = via is not None
    hops = parse_via(via)
    settings = Settings.make(seed, atol, rtol, batch_sizes, steps)
    try:
        source = LoadedFile.open(src, src_format, **hints)
    except OutsideNeutralShapeError as exc:
        if hints:
            raise
        return _whole_file_roundtrip(Path(src), src_format, hops, explicit, exc, keep,
                                     dict(seed=seed, atol=atol, rtol=rtol, batch_sizes=batch_sizes, steps=steps))
    warm_up(source, settings)
    report = RoundtripReport(src=str(source.path), src_format=source.info.name)
    if keep is not None:
        folder = Path(keep)
        if not folder.is_dir():
            raise LstmConvertError(f"{folder}: not a folder")
        for name, extension in hops:
            report.hops.append(_hop(source, name, extension, folder, explicit, settings))
        return report
    with tempfile.TemporaryDirectory(prefix="lstmconvert-roundtrip-") as tmp:
        for name, extension in hops:
            report.hops.append(_hop(source, name, extension, Path(tmp), explicit, settings))
    return report


def _hop(source: LoadedFile, name: str, extension: str, folder: Path, explicit: bool,
         settings: Settings) -> HopResult:
    path = folder / f"{source.path.stem}.roundtrip{extension}"
    info = format_for_path(path)
    model = source.model
    try:
        # Writers warn about changes a user should know (e.g. Keras being batch-major); the round
        # trip judges by weights and outputs, so the warnings go to the report, not the console.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save(model, path, force=True)
    except MissingDependencyError as exc:
        if explicit:
            raise
        return HopResult(name, path.name, "skip", f"not installed: {_reason(exc)}")
    except LstmConvertError as exc:
        if _is_unsupported(exc):
            status = "fail" if explicit else "skip"
            return HopResult(name, path.name, status, f"cannot carry: {_reason(exc)}")
        return HopResult(name, path.name, "fail", f"write failed: {_reason(exc)}")
    except Exception as exc:  # a writer bug must fail the hop, not abort the other hops
        return HopResult(name, path.name, "fail", f"writer crashed: {type(exc).__name__}: {exc}")
    try:
        back = load(path)
    except LstmConvertError as exc:
        return HopResult(name, path.name, "fail", f"written file cannot be read back: {_reason(exc)}")
    single_bias = info.capabilities.biases == 1
    problems = exactness_problems(model, back, single_bias=single_bias)
    try:
        outputs = verify_loaded(source, LoadedFile(path, back, info), expect="same", settings=settings)
    except MissingDependencyError as exc:  # written without its framework (Keras), but running needs it
        if explicit:
            raise
        return HopResult(name, path.name, "skip", f"not installed: {_reason(exc)}", weights=problems)
    except LstmConvertError as exc:  # SRC already ran (warm_up), so this is the hop file's problem
        return HopResult(name, path.name, "fail", f"cannot compare outputs: {_reason(exc)}", weights=problems)
    count = len(model.arrays())
    if problems:
        weights = f"weights NOT bit-exact ({len(problems)} problem{'s' if len(problems) > 1 else ''})"
    else:
        weights = f"weights bit-exact ({count} arrays{', biases folded b_ih+b_hh' if single_bias else ''})"
    worst = max((c.stats.max_abs for c in outputs.cases if c.stats is not None), default=float("nan"))
    runs = f"outputs {'match' if outputs.passed else 'MISMATCH'} in {info.name} (max abs {worst:.3g}, {outputs.tolerance})"
    status = "pass" if not problems and outputs.passed else "fail"
    return HopResult(name, path.name, status, f"{weights}; {runs}", weights=problems, verify=outputs,
                     warnings=[" ".join(str(w.message).split()) for w in caught])


def _whole_file_roundtrip(src: Path, src_format: Optional[str], hops: tuple, explicit: bool,
                          outside: OutsideNeutralShapeError, keep: Optional[PathLike], checks: dict) -> RoundtripReport:
    """A model outside the neutral shape: only its own format can hold it, so the one hop is an in-place
    widening in that format, checked as ``verify`` checks such files (whole graphs run, or a structural
    proof of every tensor for a PyTorch state_dict). Other formats are skipped (failed if named)."""
    from ..api import widen_in_place
    from ..options import EditRequest
    from ..registry import format_module
    from .whole_model import verify_whole

    info = format_for_path(src, src_format)
    report = RoundtripReport(src=str(src), src_format=info.name)
    why = f"SRC holds {outside.layer}, outside [Embedding] -> LSTM stack -> [Dense head]; only {info.name} carries it"
    own = [(name, extension) for name, extension in hops if format_for_path(Path("x" + extension)).name == info.name]
    for name, extension in hops:
        if (name, extension) not in own:
            report.hops.append(HopResult(name, "-", "fail" if explicit else "skip", f"cannot carry: {why}"))
    if not own:
        return report
    name, extension = own[0]
    with tempfile.TemporaryDirectory(prefix="lstmconvert-roundtrip-") as tmp:
        folder = Path(keep) if keep is not None else Path(tmp)
        path = folder / f"{src.stem}.roundtrip{extension}"
        module = format_module(info)
        # A file with a graph finds its LSTMs; a state_dict gets every LSTM it holds named (no consumer:
        # the proof then checks every other tensor is carried bit for bit).
        lstms = [] if hasattr(module, "run_graph") else [
            row["name"] for row in module.describe_edit(src, EditRequest()) if row["role"] == "lstm"]
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            edited = widen_in_place(src, path, format=src_format, lstm=lstms, force=True)
        checked = verify_whole(module, src, path, **checks)
    if hasattr(checked, "cases"):
        how = f"outputs {'match' if checked.passed else 'MISMATCH'} in {info.name}, whole files run"
    else:
        how = "structural proof: " + ("holds" if checked.passed else "does NOT hold") + f" ({len(checked.lines)} checks)"
    detail = f"widened in place ({', '.join(map(repr, edited.widened))}; the file's other layers as they were); {how}"
    report.hops.append(HopResult(name, path.name, "pass" if checked.passed else "fail", detail,
                                 weights=[] if checked.passed or hasattr(checked, "cases") else list(checked.lines)))
    return report


def warm_up(source: LoadedFile, settings: Settings) -> None:
    """Run SRC on every input once up front: a SRC that cannot run is bad input, not a failed hop."""
    for case in settings.inputs(source.model):
        run_source(source, case)


def _is_unsupported(exc: BaseException) -> bool:
    """The writer refused the model on purpose (api.save keeps the UnsupportedError's class)."""
    return isinstance(exc, UnsupportedError)


def _reason(exc: BaseException) -> str:
    """The problem alone: the hop's file is named beside it, and its folder may be a temporary one."""
    text = exc.problem if isinstance(exc, LstmConvertError) else str(exc)
    return " ".join(text.split())
