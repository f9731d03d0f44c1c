"""The sweep plan: what ``tune/driver/run.py`` checked on the command line (its typed ``SweepOptions`` among it), handed
to everything that runs the sweep.

It sits below the command line (``run.py``), the dry run (``cost.py``), the sweep itself (``sweep.py``) and
its table (``publish.py``), so that those import it and none of them imports the command line back.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contralord import machine
from contralord.config import ContraLordConfig
from tune import spaces
from tune.checks import is_uri
from tune.options import SweepOptions
from tune.trial import reuse

REPO = Path(__file__).resolve().parents[1]


@dataclass
class SweepPlan:
    kind: str
    options: SweepOptions
    knob: str
    variants: list[spaces.Variant]
    base: dict[str, Any]
    seeds: list[int]
    storage: str
    tracking_uri: str
    name: str
    started: float = field(default_factory=time.time)  # validated: the sweep's work starts (its wall time's zero)
    estimate: Any = None  # tune.pricing.estimate.SweepEstimate, once run_sweep has made it


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def local_work_dir(storage: str, name: str) -> str:
    """Node-local folder for trial working files (checkpoints travel through Ray's storage)."""
    root = Path.home() / ".contralord" if is_uri(storage) else Path(storage)
    return str(root / name / "work")


def local_machine(options: SweepOptions) -> Callable[[ContraLordConfig], machine.Machine] | None:
    """config -> the machine a trial of this sweep would run on, when Ray is local; None on a cluster
    (``--address``), where a trial's node is not known before it is placed."""
    if not options.local_ray:
        return None
    return functools.partial(reuse.trial_machine, cpus_per_worker=options.cpus_per_worker,
                             use_gpu=options.gpus_per_worker > 0)
