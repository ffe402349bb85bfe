"""Rows of the benchmark table, targets and verdicts, and the text / markdown renderings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

COLUMNS = ("section", "measurement", "lstmconvert", "baseline", "ratio", "target", "verdict")


@dataclass
class Row:
    """One line of the table: our figure, the baseline measured beside it, their ratio, the verdict."""

    section: str
    measurement: str
    ours: str
    baseline: str = ""
    ratio: Optional[float] = None
    target: str = ""
    verdict: str = ""


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def size(value: float) -> str:
    """Bytes as MB/GB (powers of 1000, as file sizes are usually quoted)."""
    if value >= 1e9:
        return f"{value / 1e9:.2f} GB"
    if value >= 1e6:
        return f"{value / 1e6:.1f} MB"
    return f"{value / 1e3:.0f} kB"


def at_most(value: float, limit: float, unit: str = "×") -> str:
    """Verdict for "value <= limit": met, or missed and by how much."""
    if value <= limit:
        return "met"
    if unit == "s":
        return f"MISSED by {seconds(value - limit)}"
    over = value / limit
    if over < 1.1:
        return f"MISSED by {(over - 1) * 100:.1f}%"
    return f"MISSED by {(over - 1) * 100:.0f}%" if over < 2 else f"MISSED: {over:.1f}× the limit"


def failed(section: str, measurement: str, message: str, target: str = "") -> Row:
    """A row for a measurement that could not be taken (the verdict says so; never a silent gap)."""
    return Row(section, measurement, message, target=target, verdict="FAILED" if target else "")


def render_text(rows: list) -> str:
    """An aligned plain-text table with the COLUMNS header."""
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(COLUMNS))]
    widths = [min(w, 70) for w in widths]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(_fit(c, w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list) -> str:
    """The same table in GitHub markdown."""
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join([head, rule] + body)


def _cells(row: Row) -> list:
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
    return [row.section, row.measurement, row.ours, row.baseline, ratio, row.target, row.verdict]


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
