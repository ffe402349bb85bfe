"""A small fuzzing campaign (``python -m fuzz`` runs long ones): every mutant of every fixture ends cleanly.

For each seeded mutant the campaign checks: exit 0 with an output that loads back, or exit 2 with one
error line; no traceback; nothing left on failure; the input unchanged; no code from the file run
(see ``fuzz/campaign.py``). The checks themselves are tested first, so a green campaign means something.
"""

from __future__ import annotations

import pickle
import random
import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("h5py")

from fuzz import campaign, structured  # noqa: E402

BUDGET_SECONDS = 45


def test_hostile_payloads_would_create_the_canary(tmp_path):
    """The canary check can fail: the payloads do run code when loaded by a loader that runs code."""
    for seed in range(8):
        canary = tmp_path / f"canary{seed}"
        pickle.loads(structured.hostile_pickle(random.Random(seed), canary))
        assert canary.exists()
    canary = tmp_path / "lambda"
    layer = structured.lambda_layer(canary)
    import base64
    import marshal
    import types

    code = marshal.loads(base64.b64decode(layer["config"]["function"]["config"]["code"]))
    types.FunctionType(code, {})(1)
    assert canary.exists()


def test_mutants_are_reproducible_and_varied(tmp_path):
    fixtures = campaign.model_fixtures()
    assert {p.suffix for p in fixtures} >= {".pt", ".keras", ".h5", ".onnx"}
    a = campaign.make_mutant(3, 7, fixtures, tmp_path / "a")
    b = campaign.make_mutant(3, 7, fixtures, tmp_path / "b")
    assert a.description == b.description and a.fixture == b.fixture
    assert (tmp_path / "a" / "in" / a.fixture.name).read_bytes() == (tmp_path / "b" / "in" / b.fixture.name).read_bytes()
    assert len({campaign.make_mutant(3, i, fixtures, tmp_path / f"m{i}").description for i in range(20)}) > 10


def test_the_checks_catch_broken_promises(tmp_path):
    fixtures = campaign.model_fixtures()
    mutant = campaign.make_mutant(0, 0, fixtures, tmp_path / "m")
    before = campaign._digest(mutant.folder / "in")
    clean = {"code": 2, "stderr": "lstmconvert: error: x: bad\n", "stdout": ""}
    assert campaign.check(mutant, clean, before) == []
    assert campaign.check(mutant, {**clean, "stderr": "lstmconvert: error: a\nlstmconvert: error: b\n"}, before)
    assert campaign.check(mutant, {**clean, "stderr": "Traceback (most recent call last):\n"}, before)
    assert campaign.check(mutant, {"code": 1, "stderr": "", "stdout": ""}, before)
    assert campaign.check(mutant, {"code": 0, "stderr": "", "stdout": "", "load_error": "ReadError: x"}, before)
    (mutant.output.parent / ".converted.onnx.abcdefgh").mkdir()
    assert campaign.check(mutant, clean, before)
    (mutant.output.parent / ".converted.onnx.abcdefgh").rmdir()
    mutant.canary.touch()
    assert campaign.check(mutant, clean, before)
    mutant.canary.unlink()
    victim = next((mutant.folder / "in").iterdir())
    victim.write_bytes(victim.read_bytes() + b"x")
    assert campaign.check(mutant, clean, before)


def test_a_small_campaign_finds_no_defect():
    # Outputs .onnx and .pt only: the .keras writer's TensorFlow import would eat the budget (python -m fuzz
    # writes all three); every reader, including Keras's, is exercised.
    summary = campaign.run(count=400, seed=12, time_limit=BUDGET_SECONDS, targets=[".onnx", ".pt"])
    assert summary["count"] >= 40, summary
    assert summary["exit 0"] > 0 and summary["exit 2"] > 0, summary  # both outcomes were exercised
    assert summary["defects"] == [], summary["defects"]


def test_a_crashing_worker_is_a_defect_not_a_hang(tmp_path):
    """A native crash in a framework kills the worker: the campaign records a defect and restarts it."""
    fixtures = campaign.model_fixtures()
    mutant = campaign.make_mutant(0, 1, fixtures, tmp_path / "m")
    before = campaign._digest(mutant.folder / "in")
    worker = campaign.Worker(tmp_path / "log")
    worker.start()
    try:
        threading.Timer(0.3, worker.proc.kill).start()  # dies while importing the frameworks
        result = worker.run(mutant)
        assert result["crash"].startswith("crash: the process died"), result
        assert campaign.check(mutant, result, before) == [result["crash"]]
        assert "code" in worker.run(mutant)  # a fresh worker takes over
    finally:
        worker.stop()
