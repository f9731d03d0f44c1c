"""Sweep Table 2: ContraLORD against LORD, Gabbay et al. (zerodim) and Locatello et al., all under the
paper's partial-labels protocol (eval.protocol=partial-labels) on the same data and labels.

    python tune/sweep_methods.py --preset cpu [--seeds 3] [--set data.name=dsprites ...]

See tune/driver/run.py for every flag (--address, --tracking-uri, --storage, --resume, --max-concurrent, ...).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("methods"))
