"""Where a conversion spends its time and memory: per stage, in one process.

    python benchmarks/profile_conversion.py SRC DST [--top 25] [--lstmconvert-path DIR]

Stages: importing lstmconvert and the frameworks the two formats need, ``load``,
``to_bidirectional``, ``save``. For each: seconds, resident memory after it, and the peak so far
(``ru_maxrss``, which only grows). ``--top N`` adds cProfile's N most expensive calls (cumulative)
of the load/convert/save stages. DST is deleted afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import pstats
import resource
import sys
import time
from pathlib import Path

# Libraries imported up front, so the stages below show the conversion's own cost (Keras files are
# read and written with h5py alone).
FRAMEWORKS = {".pt": ["torch"], ".pth": ["torch"], ".onnx": ["onnx"], ".keras": ["h5py"], ".h5": ["h5py"]}


def rss_now() -> float:
    """Current resident set size in GB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 1e9


def rss_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--top", type=int, default=0, help="print cProfile's N most expensive calls")
    parser.add_argument("--lstmconvert-path", type=Path, help="import lstmconvert from this folder")
    args = parser.parse_args()
    if args.lstmconvert_path:
        folder = args.lstmconvert_path.resolve()
        sys.path.insert(0, str(folder / "src" if (folder / "src" / "lstmconvert").is_dir() else folder))

    print(f"{'stage':<18}{'seconds':>9}{'RSS GB':>9}{'peak GB':>9}")

    def report(stage: str, start: float) -> float:
        now = time.perf_counter()
        print(f"{stage:<18}{now - start:>9.2f}{rss_now():>9.2f}{rss_peak():>9.2f}", flush=True)
        return now

    start = time.perf_counter()
    for name in {m for ext in (args.src.suffix, args.dst.suffix) for m in FRAMEWORKS.get(ext, [])}:
        importlib.import_module(name)
    import lstmconvert

    start = report("imports", start)
    profile = cProfile.Profile() if args.top else None
    if profile:
        profile.enable()
    model = lstmconvert.load(args.src)
    start = report("load", start)
    model = lstmconvert.to_bidirectional(model)
    start = report("to_bidirectional", start)
    written = lstmconvert.save(model, args.dst, force=True)
    report("save", start)
    if profile:
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    print("wrote", ", ".join(f"{p.name} {p.stat().st_size / 1e9:.2f} GB" for p in written))
    for path in written:
        path.unlink()


if __name__ == "__main__":
    main()
