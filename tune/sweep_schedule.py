"""Sweep the lr schedule: is a WSD rung (a cooldown branched from a constant lr) worth a cosine run of as many
steps? Rows: rec+sup and all four terms, each as one cosine run of the ladder's top budget and as a WSD run with
rungs (tune/spaces.py: SCHEDULE_LADDERS; cpu: 160,640 against 640 steps).

    python tune/sweep_schedule.py --preset cpu --seeds 3 [--set key=value ...]

Every row of a seed regresses the same stage 1, so the table compares each WSD row with the cosine row of the
same losses, paired by seed (``make_tables.py --spec schedule``); ``--rungs`` adds the WSD rows' lower rung.
See tune/driver/run.py for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("schedule"))
