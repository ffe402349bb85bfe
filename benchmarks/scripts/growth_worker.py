"""Time the in-process API (load + to_bidirectional + save) on Taggers of growing hidden size.

    python growth_worker.py WORKDIR --hidden 256 512 --vocab V --embed E --layers L --tags K --repeats 3

Start-up is paid once, before timing: every target format is written once on a tiny model first.
Prints one JSON line per (hidden, target): seconds (median), bytes written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch

import lstmconvert
from user_model import Tagger

TARGETS = (".onnx", ".pt")


def convert(source: Path, target: Path) -> float:
    start = time.perf_counter()
    model = lstmconvert.to_bidirectional(lstmconvert.load(source))
    lstmconvert.save(model, target, force=True)
    return time.perf_counter() - start


def written(target: Path) -> list:
    return [target] + sorted(target.parent.glob(target.name + ".*"))


def make(path: Path, hidden: int, args) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        torch.save(Tagger(args.vocab, args.embed, hidden, args.layers, args.tags).state_dict(), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    for name in ("vocab", "embed", "layers", "tags", "repeats"):
        parser.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    warm = args.workdir / "growth_warm.pt"
    make(warm, 4, args)
    for ext in TARGETS:
        convert(warm, args.workdir / f"growth_warm_bi{ext}")
    for hidden in args.hidden:
        source = args.workdir / f"growth_{hidden}.pt"
        make(source, hidden, args)
        for ext in TARGETS:
            target = args.workdir / f"growth_{hidden}_bi{ext}"
            times = [convert(source, target) for _ in range(args.repeats)]
            size = sum(p.stat().st_size for p in written(target))
            for p in written(target):
                p.unlink()
            print(json.dumps({"hidden": hidden, "target": ext, "seconds": statistics.median(times), "bytes": size}),
                  flush=True)
        source.unlink()


if __name__ == "__main__":
    main()
