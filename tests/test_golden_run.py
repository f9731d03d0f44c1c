"""A fixed-seed tiny run against its stored copy (``tests/golden/tiny_train.json``): a change meant to keep
behaviour (a refactor, a move of files) must leave the resolved config, the stage-1 cache key and every summary
value as they were.

- The resolved config (``config.json``, what a sweep logs as MLflow params) and the stage-1 cache key must match
  exactly on every machine.
- The summary's values (``summary.json`` as written, whose numbers ``metrics.json`` holds by step) must match
  **bit for bit** on a machine the file has an entry for: ``contralord.machine``'s id (CPU model, torch build,
  threads) with the CPU's generation and vector capability and the numpy, scipy and scikit-learn versions (the
  probes and DCI's trees run on them). Other kernels round differently, so elsewhere only the set of summary keys
  must match, and the training losses (continuous, 3 steps from the same start) to a relative 1e-4.

The run is on the CPU (a GPU's TF32 convolutions round otherwise). Times and throughputs are left out. To record a
deliberate change of behaviour, run ``CONTRALORD_UPDATE_GOLDEN=1 pytest tests/test_golden_run.py`` and commit the
file with the change that explains it: the entries of other machines are dropped (they hold the old behaviour);
``CONTRALORD_UPDATE_GOLDEN=add`` adds this machine's entry to the others, for a behaviour not changed. The test then
fails once more to say that it wrote.
"""

import json
import math
import os
from pathlib import Path

import numpy
import pytest
import scipy
import sklearn
import torch
from conftest import TINY

from contralord import machine
from contralord.config import ContraLordConfig
from contralord.run.trainer import train

GOLDEN = Path(__file__).parent / "golden" / "tiny_train.json"
UPDATE = os.environ.get("CONTRALORD_UPDATE_GOLDEN", "")  # "1": replace every entry; "add": add this machine's
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
    """``latent/final/total``, ``encoder/final/rec``, ...: not ``encoder/final/grad/rec`` (a gradient norm)."""
    return any(name.startswith(prefix) and name.removeprefix(prefix) in LOSS_NAMES for prefix in LOSS_PREFIXES)


def _same(a, b) -> bool:
    """Bit for bit, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _numerics(summary: dict) -> tuple[str, str]:
    """(key, description) of what the summary's last digits depend on: the run's machine id (its own record, not a
    second look), the CPU's generation and vector capability, and the numeric libraries' versions."""
    generation = summary["machine"].get("cpu_generation") or "unknown CPU generation"
    capability = f"{generation}, {torch.backends.cpu.get_cpu_capability()}"
    versions = f"numpy {numpy.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}"
    key = f"{summary['machine']['id']}/{capability}/{numpy.__version__}/{scipy.__version__}/{sklearn.__version__}"
    fields = (summary["machine"].get(k, "") for k in ("cpu", "torch", "threads", "gpu", "blas_threads"))
    return key, f"{machine.describe_fields(*fields)}; {capability}; {versions}"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("golden") / "run"
        train(ContraLordConfig.from_overrides(TINY | {"run.device": "cpu"}), out)
        return (out / "config.json").read_text(), json.loads((out / "summary.json").read_text())
    finally:
        torch.set_num_threads(threads)


def _update(config: dict, summary: dict) -> None:
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() and UPDATE == "add" else {"summaries": {}}
    stored["config"] = config
    stored["latent_key"] = summary["latent_key"]
    key, described = _numerics(summary)
    stored["summaries"][key] = {"numerics": described, "summary": _flat(summary)}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    pytest.fail(f"wrote {GOLDEN} for {key} ({described}); commit it and run again without CONTRALORD_UPDATE_GOLDEN")


def test_tiny_run__config_and_stage1_key_as_stored(tiny_run):
    text, summary = tiny_run
    config = json.loads(text)
    if UPDATE:
        _update(config, summary)
    golden = json.loads(GOLDEN.read_text())
    as_text = lambda c: json.dumps(c, indent=0, sort_keys=True).splitlines()  # noqa: E731 (1 and 1.0 differ)
    changed = sorted(set(as_text(golden["config"])) ^ set(as_text(config)))
    assert not changed, f"resolved config differs from {GOLDEN.name} (lines of one side only): {changed}"
    assert summary["latent_key"] == golden["latent_key"], "the stage-1 cache key changed: every cached stage 1 is lost"


def test_tiny_run__summary_as_stored(tiny_run):
    _, summary = tiny_run
    golden = json.loads(GOLDEN.read_text())["summaries"]
    now = _flat(summary)
    key, described = _numerics(summary)
    if key in golden:
        stored = golden[key]["summary"]
        assert now.keys() == stored.keys(), sorted(now.keys() ^ stored.keys())
        differ = {k: (stored[k], now[k]) for k in stored if not _same(stored[k], now[k])}
        assert not differ, f"on {described} these values changed (stored, now): {differ}"
        return
    reference = next(iter(golden.values()))["summary"]  # another machine: same keys, losses to 1e-4
    assert now.keys() == reference.keys(), sorted(now.keys() ^ reference.keys())
    losses = [k for k in reference if _is_loss(k)]
    assert len(losses) >= 8, losses
    far = {k: (reference[k], now[k]) for k in losses
           if not math.isclose(reference[k], now[k], rel_tol=CROSS_MACHINE_RTOL)}
    assert not far, f"training losses differ beyond {CROSS_MACHINE_RTOL} from another machine's (stored, now): {far}"
