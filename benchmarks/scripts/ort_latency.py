"""Run ONNX files side by side in onnxruntime: do they agree, and how fast is each.

    python ort_latency.py A.onnx B.onnx ... --vocab V --steps 100 --batches 1 32 --runs 50

Every file gets the same token ids (ids 1..V-1, laid out (T, N) or, with --batch-major, (N, T))
and an onnxruntime InferenceSession with the same options. The first file is the reference: each other file's largest
absolute output difference from it is reported. Timing interleaves the files run by run, in a
rotating order, so drift in a shared machine's load hits them alike; the median of ``--runs``
timed runs follows ``--warmup`` untimed ones. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime


def open_model(path: str, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--vocab", type=int, required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-major", action="store_true")
    args = parser.parse_args()

    runners = [open_model(path, args.threads) for path in args.models]
    rng = np.random.default_rng(0)
    result = {"max_abs_diff": {}, "median_ms": {}}
    for batch in args.batches:
        shape = (batch, args.steps) if args.batch_major else (args.steps, batch)
        tokens = rng.integers(1, args.vocab, size=shape, dtype=np.int64)
        feeds = [{s.get_inputs()[0].name: tokens} for s in runners]
        outputs = [s.run(None, f)[0] for s, f in zip(runners, feeds)]
        for path, out in zip(args.models[1:], outputs[1:]):
            diff = float(np.max(np.abs(out.astype(np.float64) - outputs[0]))) if out.shape == outputs[0].shape else None
            result["max_abs_diff"].setdefault(path, {})[batch] = diff
        for _ in range(args.warmup):
            for s, f in zip(runners, feeds):
                s.run(None, f)
        samples = [[] for _ in runners]
        for run in range(args.runs):
            for shift in range(len(runners)):  # each file goes first equally often
                k = (run + shift) % len(runners)
                start = time.perf_counter()
                runners[k].run(None, feeds[k])
                samples[k].append(time.perf_counter() - start)
        if args.runs:
            for path, times in zip(args.models, samples):
                result["median_ms"].setdefault(path, {})[batch] = statistics.median(times) * 1000
    print(json.dumps(result))


if __name__ == "__main__":
    main()
