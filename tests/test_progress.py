"""Progress on the console (contralord/progress.py): outside a terminal at most one line per 5 % of the steps, each
with the epoch, the loss and the time left; a resumed run counts from where it resumed; trials show none."""

import io

from contralord import progress
from contralord.config import ContraLordConfig
from contralord.latent_stage import train_latent
from contralord.runtime import LocalRuntime
from contralord.trainer import build_data


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

    train_latent(cfg, build_data(cfg), tmp_path, LocalRuntime(progress=recording))
    (total, initial, desc), = seen
    assert initial == 0 and desc == f"[stage 1, seed {cfg.run.seed}]" and total == 3 * cfg.latent.epochs
    last = stream.getvalue().splitlines()[-1]
    assert f"100% {total}/{total} steps, epoch {cfg.latent.epochs}/{cfg.latent.epochs}, loss " in last, last
