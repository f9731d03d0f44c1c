"""Sweep Table 1, linear classification: ContraLORD, MoCo, SimCLR, LORD and Gabbay et al. (our closest row to
OverLORD), each scored by a linear probe of the class from its frozen backbone features, with two floors (the probe
on raw pixels, a classifier trained on the labelled images alone) logged by the first row (tune/spaces.py:
LINEAR_METHODS; smoke: ContraLORD and MoCo).

    python tune/sweep_linear.py --preset cpu --seeds 3 [--set data.name=dsprites ...]
    python tune/sweep_linear.py --preset paper --set data.name=cifar10 --set data.path=/data/cifar-10-batches-py \
        --address auto   # the paper's data on a cluster (README, "Table 1")

Every row of a seed sees the same images, so the table compares rows paired by seed (``make_tables.py --spec
table1``, one row per data set and method). See tune/driver/run.py for every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import tune`

from tune.driver.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("linear"))
