"""Progress on the console (contralord/training/progress.py): outside a terminal at most one line per 5 % of the
steps, each with the epoch, the loss and the time left; a resumed run counts from where it resumed; trials show none."""

import io

import pytest

from contralord import labels
from contralord.config import ContraLordConfig
from contralord.setup import Setup, build_data
from contralord.stage1.best_reference import RECIPES
from contralord.stage1.latent_factors import REFERENCE_MAX_STEPS
from contralord.stage1.latent_stage import train_latent
from contralord.training import progress
from contralord.training.runtime import LocalRuntime


def test_lines__one_per_five_percent_with_the_time_left():
    stream = io.StringIO()
    bar = progress.console(200, 0, "[stage 1, seed 0]", stream)  # a StringIO is no terminal
    for step in range(200):
        bar.update(1, f"epoch {step // 20 + 1}/10, loss 0.5")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].startswith("[stage 1, seed 0]   5% 10/200 steps, epoch 1/10, loss 0.5 [")
    assert lines[-1].startswith("[stage 1, seed 0] 100% 200/200 steps, epoch 10/10") and " left]" in lines[-1]


def test_lines__a_resumed_run_starts_at_its_step():
    stream = io.StringIO()
    bar = progress.console(100, 47, "[x]", stream)
    for _ in range(53):
        bar.update(1)
    assert [line.split("%")[0][-3:].strip() for line in stream.getvalue().splitlines()] == [
        str(p) for p in range(50, 101, 5)]


def test_stage1__progress_lines_name_epoch_and_loss(tmp_path, tiny_overrides, capsys):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    seen, stream = [], io.StringIO()

    def recording(total, initial, desc):
        seen.append((total, initial, desc))
        return progress.console(total, initial, desc, stream=stream)

    data = build_data(cfg)
    train_latent(Setup.of(cfg, data), tmp_path, LocalRuntime(progress=recording))
    (total, initial, desc), (references, start, then) = seen  # stage 1, then its references: no silent minutes
    assert initial == 0 and desc == f"[stage 1, seed {cfg.run.seed}]" and total == 3 * cfg.latent.epochs
    lines = stream.getvalue().splitlines()
    last = [line for line in lines if line.startswith(desc + " ")][-1]
    assert f"100% {total}/{total} steps, epoch {cfg.latent.epochs}/{cfg.latent.epochs}, loss " in last, last
    factors = len(labels.labelled_names(cfg, data))
    matched = min(total, REFERENCE_MAX_STEPS)  # latent.reference_classifier is on, then the best reference's search
    assert (start, then) == (0, f"[stage 1 references, seed {cfg.run.seed}]")
    assert references == matched + cfg.latent.best_reference_steps * (len(RECIPES) + min(factors, len(RECIPES)))
    assert lines[-1].startswith(f"{then} 100% {references}/{references} steps"), lines[-1]
    ticked = [line for line in lines if line.startswith(then + " ")]
    assert len(ticked) >= 15 and ticked[0].startswith(f"{then}   5% "), ticked  # each classifier step told


def test_bounded__the_steps_not_needed_count_as_done_and_none_for_zero():
    stream = io.StringIO()
    steps = progress.Bounded(lambda *a: progress.console(*a, stream=stream), 40, "[refs]")
    for _ in range(25):  # a recipe's refit turned out not to be needed
        steps.tick()
    steps.finish()
    assert stream.getvalue().splitlines()[-1].startswith("[refs] 100% 40/40 steps")
    assert steps.done == 25 and stream.getvalue().count("\n") == 12 + 1  # every 2 steps to 24, then the jump
    empty = progress.Bounded(lambda *a: pytest.fail("no bar for 0 steps"), 0, "[none]")
    empty.tick()
    empty.finish()
