"""The warm-start example, shortened: it completes, converts through real .pt files, keeps the function.

Accuracies are measured by torch on the checkpoints the example wrote, independently of the numbers
the example reports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "warm_start.py"
TINY = ["--pretrain-steps", "60", "--finetune-steps", "20", "--eval-every", "10", "--eval-size", "100",
        "--hidden", "8", "--seeds", "0", "--quiet"]


def _load_example():
    spec = importlib.util.spec_from_file_location("warm_start_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def tiny_run(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    work = tmp_path_factory.mktemp("work")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        experiment = example.run([*TINY, "--tasks", "peek", "mirror", "--no-plot", "--out-dir", str(out),
                                  "--work-dir", str(work)])
    return experiment, out, work, printed.getvalue()


def _torch_accuracy(example, config, path: Path, bidirectional: bool) -> float:
    model = example.Tagger(config, bidirectional=bidirectional)
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    held_out = example.make_batch(config, config.eval_size, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model.eval()(held_out[0]).argmax(-1) == held_out[1]).float().mean().item()


def test_every_run_completes(tiny_run):
    experiment, *_ = tiny_run
    assert [t.config.task for t in experiment.tasks] == ["peek", "mirror"]
    for task in experiment.tasks:
        config = task.config
        (result,) = task.seeds
        assert result.pretrain.steps[-1] == config.pretrain_steps
        assert result.unidirectional.steps[-1] == config.finetune_steps
        assert result.scratch.steps[-1] == config.pretrain_steps + config.finetune_steps
        assert set(result.warm) == {"copy", "random", "zeros"}
        for curve in result.warm.values():
            assert curve.steps[0] == 0 and curve.steps[-1] == config.finetune_steps
            assert all(0.0 <= a <= 1.0 for a in curve.accuracy)


def test_converted_files_tag_exactly_like_the_unidirectional_model(example, tiny_run):
    experiment, _, work, _ = tiny_run
    for task in experiment.tasks:
        config, name = task.config, task.config.task
        (result,) = task.seeds
        uni = _torch_accuracy(example, config, work / f"uni_{name}_seed0.pt", bidirectional=False)
        assert uni == result.pretrain.accuracy[-1]
        for backward, curve in result.warm.items():
            path = work / f"bi_{name}_{backward}_seed0.pt"
            state = torch.load(path, weights_only=True)
            assert "lstm.weight_ih_l0_reverse" in state and state["head.weight"].shape[1] == 2 * config.hidden
            assert _torch_accuracy(example, config, path, bidirectional=True) == uni
            assert curve.accuracy[0] == uni


def test_backward_initialisations_are_what_they_say(tiny_run):
    _, _, work, _ = tiny_run
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    copy = torch.load(work / "bi_peek_copy_seed0.pt", weights_only=True)
    zeros = torch.load(work / "bi_peek_zeros_seed0.pt", weights_only=True)
    random = torch.load(work / "bi_peek_random_seed0.pt", weights_only=True)
    for name in names:
        assert torch.equal(copy[f"lstm.{name}_reverse"], copy[f"lstm.{name}"])
        assert not zeros[f"lstm.{name}_reverse"].any()
        assert not torch.equal(random[f"lstm.{name}_reverse"], random[f"lstm.{name}"])
    for state in (copy, zeros, random):
        weight = state["head.weight"]
        assert not weight[:, weight.shape[1] // 2:].any()  # the head ignores the new half at first


def test_tables_are_written_and_printed(tiny_run):
    experiment, out, _, printed = tiny_run
    text = (out / "warm_start.md").read_text()
    for name, table in experiment.tables.items():
        assert f"## {name}" in text and table in text and table in printed
        for run in ("unidirectional, trained on", "backward=copy", "backward=random", "backward=zeros",
                    "from scratch (same steps)", "from scratch (total steps)"):
            assert run in table
        assert len(table.splitlines()) == 2 + 6
    assert not (out / "warm_start.png").exists()


def test_plot_writes_a_png(example, tiny_run, tmp_path):
    pytest.importorskip("matplotlib")  # the test extra installs it; the example needs it only to plot
    experiment, *_ = tiny_run
    example.plot(experiment.tasks, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_conversion_that_changes_the_function_is_caught(tmp_path, monkeypatch):
    """The example's own step-0 check fails when the converted model does not compute what the source did."""
    example = _load_example()
    convert = example.lstmconvert.to_bidirectional

    def unpreserving(model, **options):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert(model, **{**options, "preserve": False})

    monkeypatch.setattr(example.lstmconvert, "to_bidirectional", unpreserving)
    with pytest.raises(AssertionError):
        example.run([*TINY, "--tasks", "peek", "--no-plot", "--out-dir", str(tmp_path)])
