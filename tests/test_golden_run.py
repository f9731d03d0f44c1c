"""A fixed-seed tiny run against its stored copy (``tests/golden/tiny_train.json``): a change meant to keep
behaviour (a refactor, a move of files) must leave the resolved config, the stage-1 cache key and every summary
value as they were.

- The resolved config (``config.json``, what a sweep logs as MLflow params) and the stage-1 cache key must match
  exactly on every machine.
- The summary's values (``summary.json``, whose numbers ``metrics.json`` holds by step) must match **bit for bit**
  on a machine the file has an entry for (``contralord.machine``'s id: CPU model, torch build, threads).
  Other kernels round differently, so on another machine only the set of summary keys must match, and the
  training losses (continuous, 3 steps from the same start) to a relative 1e-4.

Times and throughputs are left out. To record this machine (or a deliberate change of behaviour), run
``CONTRALORD_UPDATE_GOLDEN=1 pytest tests/test_golden_run.py`` and commit the file with the change that explains
it; the test then fails once more to say that it wrote.
"""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY

from contralord import machine
from contralord.config import ContraLordConfig
from contralord.trainer import train

GOLDEN = Path(__file__).parent / "golden" / "tiny_train.json"
UPDATE = os.environ.get("CONTRALORD_UPDATE_GOLDEN") == "1"
VOLATILE = ("time/",)  # wall-clock times
VOLATILE_SUFFIXES = ("images_per_s",)
LOSS_PREFIXES = ("latent/final/", "encoder/final/")  # the training losses compared across machines
LOSS_NAMES = ("total", "recon", "code_penalty", "recon_labelled", "label_ce", "entropy", "rec", "sup",
              "nce_content", "nce_residual")
CROSS_MACHINE_RTOL = 1e-4


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"a/b/c": leaf} of a nested summary (the rungs and per-factor dicts), times and throughputs left out."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}/"))
        elif not name.startswith(VOLATILE) and not name.endswith(VOLATILE_SUFFIXES):
            out[name] = value
    return out


def _is_loss(name: str) -> bool:
    return name.startswith(LOSS_PREFIXES) and name.rsplit("/", 1)[-1] in LOSS_NAMES


def _same(a, b) -> bool:
    """Bit for bit, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("golden") / "run"
        summary = train(ContraLordConfig.from_overrides(TINY), out)
        config = json.loads((out / "config.json").read_text())
        return config, summary, machine.describe()
    finally:
        torch.set_num_threads(threads)


def _update(config: dict, summary: dict, here: machine.Machine) -> None:
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"summaries": {}}
    stored["config"] = config
    stored["latent_key"] = summary["latent_key"]
    stored["summaries"][here.id] = {"machine": str(here), "summary": _flat(summary)}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    pytest.fail(f"wrote {GOLDEN} for machine {here.id} ({here}); commit it and run again without "
                f"CONTRALORD_UPDATE_GOLDEN")


def test_tiny_run__config_and_stage1_key_as_stored(tiny_run):
    config, summary, here = tiny_run
    if UPDATE:
        _update(config, summary, here)
    golden = json.loads(GOLDEN.read_text())
    changed = {k: (golden["config"].get(k), config.get(k)) for k in golden["config"].keys() | config.keys()
               if golden["config"].get(k) != config.get(k)}
    assert not changed, f"resolved config differs from {GOLDEN.name} (stored, now): {changed}"
    assert summary["latent_key"] == golden["latent_key"], "the stage-1 cache key changed: every cached stage 1 is lost"


def test_tiny_run__summary_as_stored(tiny_run):
    _, summary, here = tiny_run
    golden = json.loads(GOLDEN.read_text())["summaries"]
    now = _flat(summary)
    if here.id in golden:
        stored = golden[here.id]["summary"]
        assert now.keys() == stored.keys(), sorted(now.keys() ^ stored.keys())
        differ = {k: (stored[k], now[k]) for k in stored if not _same(stored[k], now[k])}
        assert not differ, f"on machine {here.id} ({here}) these values changed (stored, now): {differ}"
        return
    reference = next(iter(golden.values()))["summary"]  # another machine: same keys, losses to 1e-4
    assert now.keys() == reference.keys(), sorted(now.keys() ^ reference.keys())
    losses = [k for k in reference if _is_loss(k)]
    assert len(losses) >= 8, losses
    far = {k: (reference[k], now[k]) for k in losses
           if not math.isclose(reference[k], now[k], rel_tol=CROSS_MACHINE_RTOL)}
    assert not far, f"training losses differ beyond {CROSS_MACHINE_RTOL} from another machine's (stored, now): {far}"
