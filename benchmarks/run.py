"""Benchmarks: lstmconvert's conversion speed and memory against what users do today.

    python benchmarks/run.py                 # the full run (~8 minutes on 2 cores, ~5 GB scratch disk)
    python benchmarks/run.py --quick         # smaller models, fewer repeats, for development
    python benchmarks/run.py --only tagger,inference --markdown out.md

Sections: start (CLI start-up, frameworks each conversion imports), tagger (the fixture taggers
against users' export scripts), scale (a 1.5 GB bidirectional model), inference (onnxruntime
latency against torch.onnx.export's file), growth (time against output size), inplace (widening inside
a CRNN-style model against a pure stack of the same size). Every figure is a
median of repeated measurements, baselines are measured beside it in the same run, and anything
that involves start-up runs as a cold subprocess. Prints one table; exits 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from .context import Context  # noqa: E402
from .machine import describe  # noqa: E402
from .measure import use_lstmconvert_from  # noqa: E402
from .presets import PRESETS  # noqa: E402
from .report import render_markdown, render_text  # noqa: E402
from .sections import cli_start, growth, inference, inplace, scale, tagger  # noqa: E402

SECTIONS = {"start": cli_start, "tagger": tagger, "scale": scale, "inference": inference, "growth": growth,
            "inplace": inplace}


def make_workdir(parent=None) -> Path:
    """A fresh scratch folder, inside ``parent`` when given (created if it does not exist yet)."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="lstmconvert-bench-", dir=parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="preset", help="smaller, fewer repeats")
    size.add_argument("--smoke", action="store_const", const="smoke", dest="preset",
                      help="tiny models, one repeat: checks that the harness runs, figures mean nothing")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--markdown", type=Path, help="also write the table, notes and machine as markdown here")
    parser.add_argument("--workdir", type=Path, help="scratch folder, created if missing (default: a temporary one); needs ~5 GB free")
    parser.add_argument("--lstmconvert-path", type=Path, metavar="DIR",
                        help="measure the lstmconvert package in DIR (e.g. a checkout with a proposed change)")
    args = parser.parse_args(argv)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = sorted(wanted - set(SECTIONS))
    names = [n for n in SECTIONS if n in wanted]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    preset = PRESETS[args.preset or "full"]
    if args.lstmconvert_path:
        use_lstmconvert_from(args.lstmconvert_path)

    workdir = make_workdir(args.workdir)
    ctx = Context(preset, workdir)
    rows, started = [], time.time()
    machine = describe()
    print(f"preset {preset.name}; {machine['summary']}", flush=True)
    if args.lstmconvert_path:
        print(f"lstmconvert from {args.lstmconvert_path}", flush=True)
    try:
        for name in names:
            section_start = time.time()
            print(f"... {name}", file=sys.stderr, flush=True)
            rows += SECTIONS[name].run(ctx)
            print(f"    {name} took {time.time() - section_start:.0f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine_after = describe()
    print(render_text(rows))
    if ctx.notes:
        print("\nnotes:")
        for note in ctx.notes:
            print(f"- {note}")
    print(f"\nload average before/after: {machine['load']} / {machine_after['load']}; "
          f"total {time.time() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text(_markdown(preset.name, rows, ctx.notes, machine, machine_after))
    return 1 if any(r.verdict == "FAILED" or r.ours.startswith("failed") for r in rows) else 0


def _markdown(preset: str, rows: list, notes: list, before: dict, after: dict) -> str:
    lines = [f"Preset `{preset}`, run {time.strftime('%Y-%m-%d %H:%M')}; {before['summary']}.",
             f"Load average (1, 5, 15 min) before / after: {before['load']} / {after['load']}.", "",
             render_markdown(rows), ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
