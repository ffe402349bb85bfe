"""Which values of a graph carry a widened LSTM output, and where in them the LSTM's features sit.

In-place widening rewires an LSTM so every value downstream of it sees ``[forward ‖ backward]``
where it saw the forward features. A ``Wide`` describes one such value in the *source* graph's
terms: its rank, the axis that holds the features, and the blocks of that axis that came from the
LSTM (one block for a plain reader, one at an offset after a Concat, one per merged step after a
Reshape or Flatten over time). With ``merge="concat"`` each block gains a backward twin right after
it, so the axis grows by the blocks' total width; the other merge modes keep every shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...widening import Block


@dataclass(frozen=True)
class Wide:
    rank: int
    axis: int
    blocks: tuple  # of widening.Block, in source coordinates, sorted
    size: int  # the source's size of ``axis``

    def moved(self, rank: int, axis: int) -> "Wide":
        return replace(self, rank=rank, axis=axis)

    def widened_size(self, merge: str) -> int:
        return self.size + sum(b.width for b in self.blocks) if merge == "concat" else self.size

    def shifted(self, offset: int, size: int) -> "Wide":
        """This value's blocks at ``offset`` of an axis of ``size`` (a Concat along the features)."""
        return replace(self, blocks=tuple(Block(b.start + offset, b.width) for b in self.blocks), size=size)

    def repeated(self, times: int, rank: int, axis: int) -> "Wide":
        """The feature axis merged with ``times`` leading steps (Reshape/Flatten over time)."""
        blocks = tuple(Block(k * self.size + b.start, b.width) for k in range(times) for b in self.blocks)
        return Wide(rank, axis, blocks, self.size * times)

    def to_json(self) -> dict:
        return {"axis": self.axis, "size": self.size, "blocks": [[b.start, b.width] for b in self.blocks]}
