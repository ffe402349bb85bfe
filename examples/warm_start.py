"""Warm-start a bidirectional tagger from a trained unidirectional one, and measure whether it pays.

Two synthetic tagging tasks over tokens x_t in 0..V-1 (tokens outside the sequence count as 0). Each
label has a part the past decides and a part only the future reveals:

    label_t = F * past_t + future_t,   past_t = (x_{t-W+1} + ... + x_t) mod A

* "peek":   future_t = 1 if x_{t+1} >= V - K else 0  (F = 2): a simple look one token ahead;
* "mirror": future_t = (x_t + ... + x_{t+W-1}) mod A  (F = A): the past part's computation run
  backward in time.

A unidirectional tagger learns ``past`` and can only guess ``future``, so it plateaus well above
chance and well below 100 %; a bidirectional one can be perfect. The parts are separate classes (not
added modulo A) because a linear head over [forward, backward] can combine independent parts but
cannot add them modulo A.

The experiment, per task and seed:

1. Train a unidirectional tagger (embedding -> LSTM -> linear) for ``--pretrain-steps``.
2. Save its state_dict with ``torch.save``, read it with ``lstmconvert.load``, widen it with
   ``lstmconvert.to_bidirectional(backward=..., merge="concat")`` for each backward initialisation,
   save the result with ``lstmconvert.save`` and load it into a bidirectional tagger with
   ``load_state_dict(strict=True)``. Before any update its held-out accuracy must equal the
   unidirectional model's (the conversion preserves the function); the script asserts it.
3. Fine-tune every converted model for ``--finetune-steps``. Baselines on the same data stream and
   optimiser: the unidirectional tagger trained on for the same steps, and a bidirectional tagger
   trained from scratch, read at ``--finetune-steps`` (same budget) and at pretrain + finetune steps
   (the total the warm-started models have had).

Every fine-tuning run starts a fresh Adam (a converted model has new parameters, so there is no
optimiser state to carry over; the unidirectional baseline is reset too so all runs are treated
alike). All fine-tuning runs of a task and seed see the same batches in the same order.

Writes ``warm_start.md`` (tables and findings) and ``warm_start.png`` (curves) to ``--out-dir``
(default ``warm_start_results/`` in the current folder, so a run never replaces the committed
``docs/warm_start.md``) and prints the tables.

    python examples/warm_start.py                  # full run: writes warm_start_results/warm_start.{md,png}
    python examples/warm_start.py --out-dir docs   # refresh the committed results
    python examples/warm_start.py --tasks peek --pretrain-steps 60 --finetune-steps 20 --seeds 0 \
        --no-plot --out-dir /tmp/warm_start
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

import lstmconvert

BACKWARD_INITS = ("copy", "random", "zeros")
DEFAULT_TASKS = ("peek", "mirror")
# Accuracies whose first crossing the table reports; all lie above the unidirectional ceiling.
THRESHOLDS = (0.8, 0.9, 0.95, 0.99)
DEFAULT_OUT_DIR = Path("warm_start_results")  # docs/ holds the committed run: replace it only on purpose


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; two runs with equal configs give equal results."""

    task: str = "peek"  # see make_batch
    vocab: int = 10
    window: int = 5  # W: the past part is (x_{t-W+1} + ... + x_t) mod A
    modulus: int = 3  # A
    ahead: int = 3  # K ("peek"): the tokens V-K..V-1 set the future part to 1
    seq_len: int = 20
    embed_dim: int = 16
    hidden: int = 32
    layers: int = 1
    batch: int = 64
    lr: float = 1e-3
    pretrain_steps: int = 2000
    finetune_steps: int = 1000
    eval_every: int = 25
    eval_size: int = 500
    seeds: tuple = (0, 1, 2)

    @property
    def future_values(self) -> int:
        return 2 if self.task == "peek" else self.modulus

    @property
    def classes(self) -> int:
        return self.modulus * self.future_values

    @property
    def unidirectional_ceiling(self) -> float:
        """Best expected accuracy without seeing ahead: the past part exactly, the future part guessed
        as its most likely value given the tokens seen (averaged over the positions of a sequence)."""
        per_step = []
        for t in range(self.seq_len):
            unseen = min(1 if self.task == "peek" else self.window - 1, self.seq_len - 1 - t)
            if unseen == 0:
                per_step.append(1.0)
            elif self.task == "peek":
                per_step.append(1 - self.ahead / self.vocab)
            else:
                per_step.append(max(_residues_of_sum(self.vocab, self.modulus, unseen)))
        return sum(per_step) / len(per_step)


def _residues_of_sum(vocab: int, modulus: int, count: int) -> list:
    """P(sum of ``count`` uniform tokens 0..vocab-1 = r mod ``modulus``) for each r."""
    one = [sum(1 for v in range(vocab) if v % modulus == r) / vocab for r in range(modulus)]
    dist = [1.0] + [0.0] * (modulus - 1)
    for _ in range(count):
        dist = [sum(dist[a] * one[(r - a) % modulus] for a in range(modulus)) for r in range(modulus)]
    return dist


# -- the task ------------------------------------------------------------------------------------
def make_batch(config: Config, n: int, generator: torch.Generator) -> tuple:
    """``n`` random sequences and their labels, both (n, T) int64.

    label = past * F + future, past = (x_{t-W+1} + ... + x_t) mod A, and future is
    * "peek": 1 if x_{t+1} >= V - K else 0 (F = 2): one token ahead, a simple feature;
    * "mirror": (x_t + ... + x_{t+W-1}) mod A (F = A): the past part's mirror image, the same
      computation run backward in time.
    Tokens outside the sequence count as 0.
    """
    x = torch.randint(0, config.vocab, (n, config.seq_len), generator=generator)
    w, length = config.window, config.seq_len
    padded = nn.functional.pad(x, (w - 1, w - 1))
    past = sum(padded[:, k : k + length] for k in range(w))
    if config.task == "peek":
        future = (padded[:, w : w + length] >= config.vocab - config.ahead).long()
    elif config.task == "mirror":
        future = sum(padded[:, k : k + length] for k in range(w - 1, 2 * w - 1)) % config.modulus
    else:
        raise ValueError(f"unknown task {config.task!r}")
    return x, (past % config.modulus) * config.future_values + future


PRETRAIN_STREAM, FINETUNE_STREAM = 1, 2


def batches(config: Config, seed: int, stream: int) -> Callable[[], tuple]:
    """A fresh, seeded stream of training batches; every fine-tuning run of a seed gets the same one."""
    generator = torch.Generator().manual_seed(1_000_000 * stream + seed)
    return lambda: make_batch(config, config.batch, generator)


# -- the model -----------------------------------------------------------------------------------
class Tagger(nn.Module):
    """Embedding -> LSTM -> linear, one class per step; batch-first."""

    def __init__(self, config: Config, bidirectional: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab, config.embed_dim)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden, num_layers=config.layers,
                            batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(config.hidden * (2 if bidirectional else 1), config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


@torch.no_grad()
def accuracy(model: Tagger, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of held-out steps tagged correctly."""
    model.eval()
    hits = (model(x).argmax(-1) == y).float().mean().item()
    model.train()
    return hits


@dataclass
class Curve:
    """Held-out accuracy of one run at the steps it was measured (step 0 = before any update)."""

    steps: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)

    def record(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.accuracy.append(value)

    def first_step_reaching(self, threshold: float) -> Optional[int]:
        return next((s for s, a in zip(self.steps, self.accuracy) if a >= threshold), None)

    def at(self, step: int) -> float:
        return self.accuracy[self.steps.index(step)]


def train(model: Tagger, steps: int, config: Config, seed: int, stream: int, held_out: tuple) -> Curve:
    """Train with a fresh Adam on a seeded batch stream; measure held-out accuracy every eval_every steps."""
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    next_batch = batches(config, seed, stream)
    curve = Curve()
    curve.record(0, accuracy(model, *held_out))
    for step in range(1, steps + 1):
        x, y = next_batch()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, config.classes), y.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % config.eval_every == 0 or step == steps:
            curve.record(step, accuracy(model, *held_out))
    return curve


# -- the conversion, through lstmconvert's files -------------------------------------------------
def convert(unidirectional: Tagger, backward: str, config: Config, work_dir: Path, seed: int) -> Tagger:
    """torch.save -> lstmconvert.load -> to_bidirectional -> lstmconvert.save -> load_state_dict(strict)."""
    source = work_dir / f"uni_{config.task}_seed{seed}.pt"
    if not source.exists():
        torch.save(unidirectional.state_dict(), source)
    neutral = lstmconvert.load(source, batch_first=True)  # finds embed, lstm and head by itself
    widened = lstmconvert.to_bidirectional(neutral, backward=backward, merge="concat", seed=seed)
    target = work_dir / f"bi_{config.task}_{backward}_seed{seed}.pt"
    lstmconvert.save(widened, target, force=True)
    model = Tagger(config, bidirectional=True)
    model.load_state_dict(torch.load(target, weights_only=True), strict=True)
    return model


@dataclass
class SeedResult:
    """All curves of one seed. Warm runs' steps count from the conversion."""

    seed: int
    pretrain: Curve
    unidirectional: Curve  # trained on after pretraining
    warm: dict  # backward init -> Curve
    scratch: Curve  # bidirectional from scratch, pretrain + finetune steps
    step0_logit_gap: dict  # backward init -> max |converted logits - unidirectional logits|
    seconds: float


def check_preserved(backward: str, converted: float, unidirectional: float, logit_gap: float) -> None:
    """Function preservation seen in training: before any update the converted tagger tags the
    held-out set exactly as the unidirectional one did (raised, not asserted, so ``-O`` keeps it)."""
    if converted != unidirectional or not logit_gap <= 1e-5:
        raise AssertionError(
            f"backward={backward}: the converted model scores {converted} (logits up to {logit_gap:.1e} "
            f"apart) where the unidirectional one scored {unidirectional}"
        )


def run_seed(config: Config, seed: int, work_dir: Path, log: Callable[[str], None]) -> SeedResult:
    """Pretrain, convert three ways, fine-tune, and train the baselines for one seed."""
    started = time.perf_counter()
    held_out = make_batch(config, config.eval_size, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    uni = Tagger(config, bidirectional=False)
    pretrain = train(uni, config.pretrain_steps, config, seed, PRETRAIN_STREAM, held_out)
    uni_accuracy = pretrain.accuracy[-1]
    log(f"{config.task}, seed {seed}: unidirectional after {config.pretrain_steps} steps: {uni_accuracy:.4f} "
        f"(ceiling {config.unidirectional_ceiling:.4f})")
    with torch.no_grad():
        uni_logits = uni.eval()(held_out[0])
    uni.train()

    warm, gaps = {}, {}
    for backward in BACKWARD_INITS:
        model = convert(uni, backward, config, work_dir, seed)
        with torch.no_grad():
            gaps[backward] = (model.eval()(held_out[0]) - uni_logits).abs().max().item()
        model.train()
        check_preserved(backward, accuracy(model, *held_out), uni_accuracy, gaps[backward])
        warm[backward] = train(model, config.finetune_steps, config, seed, FINETUNE_STREAM, held_out)
        log(f"{config.task}, seed {seed}: backward={backward}: step 0 {warm[backward].accuracy[0]:.4f} "
            f"(max logit gap {gaps[backward]:.1e}), after {config.finetune_steps} steps {warm[backward].accuracy[-1]:.4f}")

    continued = train(uni, config.finetune_steps, config, seed, FINETUNE_STREAM, held_out)
    torch.manual_seed(seed)
    # Same stream as the fine-tuning runs: its first finetune_steps batches are theirs.
    scratch = train(Tagger(config, bidirectional=True), config.pretrain_steps + config.finetune_steps,
                    config, seed, FINETUNE_STREAM, held_out)
    seconds = time.perf_counter() - started
    log(f"{config.task}, seed {seed}: unidirectional trained on: {continued.accuracy[-1]:.4f}; bidirectional "
        f"from scratch: {scratch.at(config.finetune_steps):.4f} at {config.finetune_steps} steps, "
        f"{scratch.accuracy[-1]:.4f} at {config.pretrain_steps + config.finetune_steps} ({seconds:.0f} s for this seed)")
    return SeedResult(seed, pretrain, continued, warm, scratch, gaps, seconds)


# -- reporting -----------------------------------------------------------------------------------
@dataclass
class TaskResult:
    """One task's config and its per-seed results."""

    config: Config
    seeds: list  # SeedResult per seed

    def warm_curves(self, backward: str) -> list:
        return [r.warm[backward] for r in self.seeds]


@dataclass(frozen=True)
class Row:
    """One line of a table: a run, its per-seed curves, and the step whose accuracy counts as final."""

    name: str
    curves: list
    budget: int


def rows(task: TaskResult) -> list:
    pre, fine = task.config.pretrain_steps, task.config.finetune_steps
    table = [Row("unidirectional, trained on", [r.unidirectional for r in task.seeds], fine)]
    table += [Row(f"warm start, backward={b}", task.warm_curves(b), fine) for b in BACKWARD_INITS]
    scratch = [r.scratch for r in task.seeds]
    table.append(Row("bidirectional from scratch (same steps)", scratch, fine))
    table.append(Row("bidirectional from scratch (total steps)", scratch, pre + fine))
    return table


def _spread(values: list, digits: int = 4) -> str:
    """mean (min–max), or the value alone for one seed."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def steps_to(curves: list, threshold: float, budget: int) -> list:
    """Per seed: the first measured step at or above ``threshold`` within ``budget``, else None."""
    reached = [c.first_step_reaching(threshold) for c in curves]
    return [s if s is not None and s <= budget else None for s in reached]


def _steps_cell(steps: list) -> str:
    reached = [s for s in steps if s is not None]
    if not reached:
        return "not reached"
    text = _spread(reached, 0)
    missed = len(steps) - len(reached)
    return text + (f"; {missed} of {len(steps)} seeds never" if missed else "")


def markdown_table(task: TaskResult) -> str:
    """Steps to reach each threshold and the final held-out accuracy, mean (min–max) over seeds."""
    head = ["run", "steps", "accuracy at step 0", *(f"steps to {t:.0%}" for t in THRESHOLDS), "final accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(task):
        cells = [row.name, f"{row.budget}", _spread([c.accuracy[0] for c in row.curves]),
                 *(_steps_cell(steps_to(row.curves, t, row.budget)) for t in THRESHOLDS),
                 _spread([c.at(row.budget) for c in row.curves])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_steps(steps: list) -> Optional[float]:
    """Mean steps over seeds, None unless every seed got there."""
    return None if None in steps else statistics.fmean(steps)


def best_reached(curves: list, budget: int) -> tuple:
    """(highest threshold every seed reached within ``budget``, mean steps to it); (None, None) if none."""
    for threshold in reversed(THRESHOLDS):
        mean = _mean_steps(steps_to(curves, threshold, budget))
        if mean is not None:
            return threshold, mean
    return None, None


def findings(task: TaskResult) -> list:
    """Plain statements read off the numbers, whatever they turn out to be."""
    config, seeds = task.config, task.seeds
    fine, total = config.finetune_steps, config.pretrain_steps + config.finetune_steps
    uni = [r.pretrain.accuracy[-1] for r in seeds]
    gap = max(g for r in seeds for g in r.step0_logit_gap.values())
    scratch = [r.scratch for r in seeds]
    out = [
        f"After {config.pretrain_steps} steps the unidirectional tagger is at {_spread(uni)} (best possible "
        f"without looking ahead: {config.unidirectional_ceiling:.4f}); trained on for {fine} more steps it "
        f"ends at {_spread([r.unidirectional.accuracy[-1] for r in seeds])}. Every converted model tags the "
        f"held-out set exactly as well before its first update (largest logit difference {gap:.1e}).",
    ]
    ranking = []
    for backward in BACKWARD_INITS:
        curves = task.warm_curves(backward)
        final = _spread([c.accuracy[-1] for c in curves])
        threshold, mean = best_reached(curves, fine)
        if threshold is None:
            some = any(s is not None for s in steps_to(curves, THRESHOLDS[0], fine))
            out.append(f"backward={backward}: ends at {final} after {fine} steps; {'not every' if some else 'no'} "
                       f"seed reached {THRESHOLDS[0]:.0%}.")
            ranking.append((0.0, 0.0, backward))
            continue
        ranking.append((threshold, -mean, backward))
        from_scratch = _mean_steps(steps_to(scratch, threshold, total))
        versus = (f"from scratch needs {from_scratch:.0f} ({from_scratch / mean:.1f}x as many)" if from_scratch
                  else f"from scratch does not get there in every seed within {total} steps")
        out.append(f"backward={backward}: every seed at {threshold:.0%} after {mean:.0f} steps on average "
                   f"({config.pretrain_steps + mean:.0f} counting the unidirectional training), {versus}; ends at "
                   f"{final} (from scratch after the same {fine} steps: {_spread([c.at(fine) for c in scratch])}).")
    ranking.sort(reverse=True)
    text = f"backward={ranking[0][2]}"
    for (t_prev, s_prev, _), (t, s, backward) in zip(ranking, ranking[1:]):
        # Accuracy is measured every eval_every steps: closer than that is a tie.
        tied = t == t_prev and abs(s - s_prev) < config.eval_every
        text += f" {'≈' if tied else '>'} backward={backward}"
    out.append(f"Ranked by the highest accuracy every seed reached, then by steps to it (≈: less than "
               f"{config.eval_every} steps apart, the measuring interval): {text}.")
    return out


def report(tasks: list, tables: dict, plotted: bool, threads: int, seconds: float) -> str:
    """The whole warm_start.md: setup, one table and the findings per task, the figure."""
    config = tasks[0].config
    lines = [
        "# Warm-starting a bidirectional LSTM from a unidirectional one",
        "",
        f"Generated by `python examples/warm_start.py{_cli_settings(tasks)}` "
        f"in {seconds:.0f} s of training and measuring ({threads} CPU thread{'s' if threads > 1 else ''}).",
        "",
        f"Tokens 0..{config.vocab - 1}, sequences of {config.seq_len}; label_t = F·past_t + future_t with "
        f"past_t = (x_(t-{config.window - 1}) + … + x_t) mod {config.modulus}. "
        f"**peek**: future_t = [x_(t+1) ≥ {config.vocab - config.ahead}]; "
        f"**mirror**: future_t = (x_t + … + x_(t+{config.window - 1})) mod {config.modulus}. "
        "peek needs a new, simple feature from the backward direction; mirror needs what the forward "
        "direction already computes, run backward in time. "
        f"Model: embedding {config.embed_dim} → {config.layers}-layer LSTM, hidden {config.hidden} → linear. "
        f"Every run uses Adam (lr {config.lr}, batch {config.batch}); each fine-tuning run starts a fresh "
        f"optimiser, the converted models' optimiser state is new. Conversion: "
        "`lstmconvert.load` of the saved state_dict → `to_bidirectional(backward=…, merge=\"concat\")` → "
        "`lstmconvert.save(….pt)` → `load_state_dict(strict=True)`.",
        "",
        f"Held-out accuracy over {config.eval_size} sequences, measured every {config.eval_every} steps; "
        f"cells are mean (min–max) over seeds {', '.join(map(str, config.seeds))}. \"steps\" and "
        "\"steps to\" count from the start of each run: for warm starts and the trained-on baseline from "
        f"the conversion, after {config.pretrain_steps} unidirectional steps.",
    ]
    for task in tasks:
        lines += ["", f"## {task.config.task}", "", tables[task.config.task], ""]
        lines += [f"- {fact}" for fact in findings(task)]
    lines += [
        "",
        "Why backward=zeros never moves (merge concat): an all-zero LSTM direction outputs exactly 0 and "
        "the head's weights on it are 0, so every gradient reaching the backward half is exactly 0; "
        "the model keeps training as the unidirectional one.",
        "",
        "Which comparison to read: warm starting is for when a trained unidirectional model already "
        "exists, so the same-budget rows (fine-tuning steps vs a bidirectional model trained from scratch "
        "for as many steps) measure what it saves. The \"counting the unidirectional training\" figures "
        "show whether training a unidirectional model first would be a good way to get a bidirectional "
        "one from nothing.",
    ]
    if plotted:
        lines += ["", "![held-out accuracy vs training step](warm_start.png)"]
    return "\n".join(lines) + "\n"


def _cli_settings(tasks: list) -> str:
    """The flags that reproduce this run (only those differing from the defaults)."""
    defaults = Config()
    flags = []
    if tuple(t.config.task for t in tasks) != DEFAULT_TASKS:
        flags.append("--tasks " + " ".join(t.config.task for t in tasks))
    for name, value in asdict(tasks[0].config).items():
        if name != "task" and value != getattr(defaults, name):
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            flags.append(f"--{name.replace('_', '-')} {shown}")
    return "".join(f" {f}" for f in flags)


def plot(tasks: list, path: Path) -> None:
    """Per task: accuracy vs total training steps (left), and vs steps since the run started (right)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    colours = {"copy": "tab:blue", "random": "tab:orange", "zeros": "tab:red"}
    figure, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.2 * len(tasks)), squeeze=False)
    for (left, right), task in zip(axes, tasks):
        config, seeds = task.config, task.seeds
        pre = config.pretrain_steps
        runs = [("unidirectional", [r.pretrain for r in seeds], 0, "black", "-"),
                ("unidirectional, trained on", [r.unidirectional for r in seeds], pre, "grey", "-")]
        runs += [(f"warm start, backward={b}", task.warm_curves(b), pre, colours[b], "-") for b in BACKWARD_INITS]
        runs.append(("bidirectional from scratch", [r.scratch for r in seeds], 0, "tab:green", "--"))
        for label, curves, offset, colour, style in runs:
            steps = curves[0].steps
            mean = [statistics.fmean(c.accuracy[i] for c in curves) for i in range(len(steps))]
            # The trained-on baseline is drawn wide and pale: backward=zeros runs right on top of it.
            width, alpha = (4, 0.5) if colour == "grey" else (1.5, 1.0)
            left.plot([s + offset for s in steps], mean, style, color=colour, label=label, linewidth=width, alpha=alpha)
            if offset or label.startswith("bidirectional"):
                kept = [(s, a) for s, a in zip(steps, mean) if s <= config.finetune_steps]
                right.plot(*zip(*kept), style, color=colour, label=label, linewidth=width, alpha=alpha)
        for axis in (left, right):
            axis.axhline(config.unidirectional_ceiling, color="black", linewidth=0.7, linestyle=":")
            axis.set_ylim(0, 1.02)
            axis.grid(alpha=0.3)
        left.axvline(pre, color="black", linewidth=0.7)
        left.set_xlabel("total training steps (conversion at the vertical line)")
        right.set_xlabel("steps since the run started (warm starts: since the conversion)")
        left.set_ylabel(f"held-out accuracy, mean of {len(seeds)} seed(s)")
        left.set_title(f"{config.task}: whole training")
        right.set_title(f"{config.task}: same budget (dotted: best without looking ahead)")
    # One legend below the panels, where it hides no curve.
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=9)
    figure.tight_layout(rect=(0, 0.11 / len(tasks), 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- command line --------------------------------------------------------------------------------

@dataclass
class Experiment:
    """What a run produced: per-task results and tables, and the files written."""

    tasks: list  # TaskResult per task
    tables: dict  # task name -> markdown table
    written: list


def parse(argv: Optional[list]) -> argparse.Namespace:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=DEFAULT_TASKS, default=list(DEFAULT_TASKS))
    parser.add_argument("--pretrain-steps", type=int, default=defaults.pretrain_steps)
    parser.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--eval-size", type=int, default=defaults.eval_size, help="held-out sequences")
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--layers", type=int, default=defaults.layers)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where warm_start.md/.png go")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the .pt checkpoints here (default: a temporary folder)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (and matplotlib)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest for models this small")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def run(argv: Optional[list] = None) -> Experiment:
    """Run the experiment as the command line describes, write its outputs, print the tables."""
    args = parse(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> Experiment:
    started = time.perf_counter()
    log = (lambda _: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    tasks = []
    with tempfile.TemporaryDirectory(prefix="warm_start.") as scratch_dir:
        work_dir = args.work_dir or Path(scratch_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        for name in args.tasks:
            config = Config(task=name, window=args.window, pretrain_steps=args.pretrain_steps,
                            finetune_steps=args.finetune_steps, eval_every=args.eval_every,
                            eval_size=args.eval_size, layers=args.layers, hidden=args.hidden, lr=args.lr,
                            seeds=tuple(args.seeds))
            tasks.append(TaskResult(config, [run_seed(config, seed, work_dir, log) for seed in config.seeds]))
    seconds = time.perf_counter() - started
    tables = {t.config.task: markdown_table(t) for t in tasks}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = [args.out_dir / "warm_start.md"]
    if not args.no_plot:
        plot(tasks, args.out_dir / "warm_start.png")
        written.append(args.out_dir / "warm_start.png")
    written[0].write_text(report(tasks, tables, plotted=not args.no_plot, threads=args.threads,
                                 seconds=seconds))
    for name, table in tables.items():
        print(f"\n{name}\n{table}")
    return Experiment(tasks, tables, written)


def main(argv: Optional[list] = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
