"""Sweep Optuna TPE over batch size, K, the loss weights and tau, with ASHA early stopping.

    python tune/sweep_optuna.py --preset cpu [--seeds 3] [--set key=value ...]

See tune/driver/run.py for every flag (--address, --tracking-uri, --storage, --resume, --max-concurrent, ...).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("optuna"))
