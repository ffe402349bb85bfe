"""Runs ``lstmconvert.cli.main`` on the mutants ``fuzz.campaign`` sends, one JSON request per line on stdin.

For each request it captures stdout and stderr, records any exception that escapes ``main`` (which
would have been a traceback), and for exit 0 loads the output back with ``lstmconvert.load``. The
result goes to the real stdout as one line with a prefix, so noise from native code cannot be taken
for a result.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
import warnings

from .campaign import RESULT_PREFIX


def run_one(request: dict) -> dict:
    import lstmconvert
    from lstmconvert.cli import main

    out, err = io.StringIO(), io.StringIO()
    result = {}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        try:
            result["code"] = main(request["args"])
        except BaseException:  # noqa: B036 - anything escaping main is a defect to report
            result["exception"] = traceback.format_exc()
        if result.get("code") == 0:
            try:
                lstmconvert.load(request["output"])
            except lstmconvert.errors.OutsideNeutralShapeError:
                # Widened in place: the output is checked whole, against the mutant, in its runtime.
                try:
                    report = lstmconvert.verify(request["args"][1], request["output"])
                    if not report.passed:
                        result["load_error"] = "the output widened in place does not compute what its source did"
                except lstmconvert.LstmConvertError as exc:
                    if str(exc.path) != request["args"][1]:  # a mutant that cannot run is not the output's fault
                        result["load_error"] = f"{type(exc).__name__}: {exc}"[:500]
                except Exception as exc:
                    result["load_error"] = f"{type(exc).__name__}: {exc}"[:500]
            except Exception as exc:
                result["load_error"] = f"{type(exc).__name__}: {exc}"[:500]
    result["stdout"], result["stderr"] = out.getvalue(), err.getvalue()
    return result


def serve() -> None:
    real_stdout = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    for line in sys.stdin:
        if line.strip():
            real_stdout.write(RESULT_PREFIX + json.dumps(run_one(json.loads(line))) + "\n")
            real_stdout.flush()


if __name__ == "__main__":
    serve()
