"""``python -m fuzz --count N --seed S``: a fuzzing campaign over the committed fixtures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .campaign import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="mutants to run (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed; mutant i of seed s is always the same")
    parser.add_argument("--time-limit", type=float, default=float("inf"), help="stop after this many seconds")
    parser.add_argument("--keep", type=Path, help="copy each failing mutant's folder here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    def progress(summary, mutant, defects):
        if defects:
            print(f"DEFECT m{mutant.index} {mutant.fixture} [{mutant.description}] {' '.join(mutant.args[3:])}: "
                  f"{'; '.join(defects)}", flush=True)
        elif summary["count"] % 100 == 0:
            print(f"{summary['count']} mutants, {len(summary['defects'])} defects", flush=True)

    summary = run(args.count, args.seed, args.time_limit, args.keep, progress)
    if args.json:
        print(json.dumps(summary, indent=1))
    print(f"{summary['count']} mutants (seed {summary['seed']}) in {summary['seconds']} s: {summary['exit 0']} "
          f"converted, {summary['exit 2']} refused with one line, {len(summary['defects'])} defects")
    return 1 if summary["defects"] else 0


if __name__ == "__main__":
    sys.exit(main())
