"""Sweep where h_c comes from (encoder.content_head): ContraLORD's own head, stage 1's classifiers copied and
frozen (zerodim's amortisation), or copied and trained; Gabbay et al. as zerodim runs it beside them.

    python tune/sweep_content_head.py --preset cpu --seeds 3 [--set key=value ...]

Every row of a seed regresses the same stage 1, so the table compares each row with ContraLORD's learned h_c
paired by seed (``make_tables.py --spec content_head``). See tune/driver/run.py for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("content_head"))
