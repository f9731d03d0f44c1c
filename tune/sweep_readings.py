"""Sweep the readings of Eq. 4/5: anchor {online, stage1} x augmentation {on, off}, L_con on, against rec+sup.

    python tune/sweep_readings.py --preset cpu --seeds 3 [--set key=value ...]

Every row of a seed regresses the same stage 1, so the table compares each reading with rec+sup paired by
seed (``make_tables.py --spec readings``). See tune/driver/run.py for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("readings"))
