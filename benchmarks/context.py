"""What every section gets: the preset, a scratch folder, and a place for notes under the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .measure import REPO
from .presets import Preset

FIXTURES = REPO / "fixtures"


@dataclass
class Context:
    preset: Preset
    workdir: Path  # scratch space; everything written here is deleted at the end
    notes: list = field(default_factory=list)

    def note(self, text: str) -> None:
        """A finding that does not fit a table cell (a failure's message, what a run imported)."""
        self.notes.append(text)

    def path(self, name: str) -> Path:
        return self.workdir / name
