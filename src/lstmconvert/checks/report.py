"""What ``verify`` and ``roundtrip`` found, as data, as a short text table and as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from .compare import ErrorStats, Tolerance


@dataclass
class CaseResult:
    """One input batch run through both files."""

    label: str  # e.g. "(4, 6) lengths 6,2,4,1"
    stats: Optional[ErrorStats] = None
    error: Optional[str] = None  # DST failed to run, or gave the wrong shape

    @property
    def passed(self) -> bool:
        return self.error is None and self.stats is not None and self.stats.passed

    def to_dict(self) -> dict:
        out = {"input": self.label, "passed": self.passed}
        if self.stats is not None:
            out.update(self.stats.to_dict())
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class VerifyReport:
    """The outcome of ``verify(src, dst)``; ``passed`` is what the exit code reports."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    expect: str  # "same" or "forward-half"
    expect_reason: str
    tolerance: Tolerance
    seed: int
    cases: list = field(default_factory=list)
    diagnosis: list = field(default_factory=list)
    inputs_note: str = ""  # input sizes taken from a file that runs only at them

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failed_inputs(self) -> list:
        return [c.label for c in self.cases if not c.passed]

    def to_dict(self) -> dict:
        return {
            "src": self.src,
            "dst": self.dst,
            "src_format": self.src_format,
            "dst_format": self.dst_format,
            "expect": self.expect,
            "expect_reason": self.expect_reason,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "seed": self.seed,
            "inputs_note": self.inputs_note or None,
            "passed": self.passed,
            "cases": [c.to_dict() for c in self.cases],
            "failed_inputs": self.failed_inputs,
            "diagnosis": list(self.diagnosis),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self) -> str:
        compared = "DST == SRC" if self.expect == "same" else "DST's forward half == SRC"
        lines = [
            f"verify {self.src} ({self.src_format}) -> {self.dst} ({self.dst_format})",
            f"  expect {self.expect}: {compared} ({self.expect_reason}); {self.tolerance}; seed {self.seed}",
        ]
        if self.inputs_note:
            lines.append(f"  inputs: {self.inputs_note}")
        lines.append(f"  {'input':<28} {'max abs':>10} {'max rel':>10}  result")
        for case in self.cases:
            if case.stats is not None:
                numbers = f"{case.stats.max_abs:>10.3g} {case.stats.max_rel:>10.3g}"
            else:
                numbers = f"{'-':>10} {'-':>10}"
            verdict = "pass" if case.passed else "FAIL"
            if case.error:
                verdict += f": {case.error}"
            elif not case.passed:
                verdict += f": {case.stats.failing} of {case.stats.compared} values outside tolerance, worst at {case.stats.worst_index}"
            lines.append(f"  {case.label:<28} {numbers}  {verdict}")
        if self.passed:
            lines.append("PASS: DST computes what SRC computes" if self.expect == "same"
                         else "PASS: DST's forward half computes what SRC computes")
        else:
            lines.append(f"FAIL: mismatch on {', '.join(self.failed_inputs)}")
            if self.diagnosis:
                lines.append("likely cause:")
                lines += [f"  - {line}" for line in self.diagnosis]
        return "\n".join(lines)


@dataclass
class HopResult:
    """One round trip SRC -> format -> back. ``status``: "pass", "fail" or "skip"."""

    format: str
    file: str
    status: str
    detail: str
    weights: list = field(default_factory=list)  # exactness problems; empty when bit-exact
    verify: Optional[VerifyReport] = None
    warnings: list = field(default_factory=list)  # what the writer warned about

    def to_dict(self) -> dict:
        out = {"format": self.format, "file": self.file, "status": self.status, "detail": self.detail,
               "weight_problems": list(self.weights), "writer_warnings": list(self.warnings)}
        if self.verify is not None:
            out["verify"] = self.verify.to_dict()
        return out


@dataclass
class RoundtripReport:
    src: str
    src_format: str
    hops: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return any(h.status == "pass" for h in self.hops) and all(h.status != "fail" for h in self.hops)

    def to_dict(self) -> dict:
        return {"src": self.src, "src_format": self.src_format, "passed": self.passed,
                "hops": [h.to_dict() for h in self.hops]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render_text(self) -> str:
        lines = [f"roundtrip {self.src} ({self.src_format})"]
        for hop in self.hops:
            lines.append(f"  {hop.format:<6} {hop.file:<14} {hop.status.upper():<5} {hop.detail}")
            lines += [f"         - {problem}" for problem in hop.weights]
            if hop.verify is not None and not hop.verify.passed:
                lines += [f"         - mismatch on {c.label}" + (f": {c.error}" if c.error else "")
                          for c in hop.verify.cases if not c.passed]
                lines += [f"         - likely cause: {line}" for line in hop.verify.diagnosis]
        if self.passed:
            lines.append("PASS")
        elif not any(h.status == "pass" for h in self.hops) and all(h.status != "fail" for h in self.hops):
            lines.append("FAIL: no format could carry the model")
        else:
            lines.append("FAIL: " + ", ".join(h.format for h in self.hops if h.status == "fail"))
        return "\n".join(lines)
