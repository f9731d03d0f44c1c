"""Sweep lambda_sup, the weight of L_sup (Eq. 3, 6): rec+sup and all four terms, each at lambda_sup 0.1 (the
default until 2026-12-06), 1 (the default since) and 10 (tune/spaces.py: SUP_WEIGHTS; smoke: 0.1 and 1).

    python tune/sweep_sup_weight.py --preset cpu --seeds 3 [--set encoder.steps=640 ...]

Every row of a seed regresses the same stage 1, so the table compares each weight with lambda_sup 0.1 of the
same losses, paired by seed (``make_tables.py --spec sup_weight``). See tune/driver/run.py for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("sup_weight"))
