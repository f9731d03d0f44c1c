"""The console's epoch line (contralord/training/tracking.py: StdoutLogger): every metric under a name of its own, so
that a loss and its gradient norm are not both printed as "rec" (issue 32: a log line that lists metrics names them)."""

import io

from contralord.training.tracking import StdoutLogger


def test_epoch_line__names_each_metric_once_losses_apart_from_their_gradient_norms():
    stream = io.StringIO()
    StdoutLogger(stream).log_metrics({"encoder/train/total": 0.5, "encoder/train/rec": 0.25, "encoder/train/sup": 2.0,
                                      "encoder/train/grad/rec": 0.125, "encoder/train/grad/sup": 4.0,
                                      "encoder/train/epoch": 3, "encoder/train/step_end": 96}, step=96)
    line = stream.getvalue().strip()
    assert line == "[encoder] epoch 3 step 96 | total 0.5 rec 0.25 sup 2 grad/rec 0.125 grad/sup 4"
    names = line.split("| ")[1].split()[::2]
    assert len(names) == len(set(names))
