"""``--preset all-factors`` reproduces the first protocol's numbers bit for bit.

The code of the last commit before the paper's protocol existed is taken from its archive in tests/history/ and run
beside the current code on the same machine (floats differ across CPU models, so no number is pinned
here); every metric both write must be identical.
"""

import pytest
from old_code import ROOT, checkout, train_cli

from contralord.presets import PROTOCOL_PRESETS

BEFORE_PROTOCOL = "c6a95ccc615c47eb945bf9e4a9d9961ab095c699"


def _train(code, overrides: dict, out) -> dict:
    metrics, summary = train_cli(code, overrides, out)
    return metrics | summary


@pytest.mark.slow
def test_all_factors_preset__reproduces_the_first_protocol(tmp_path, tiny_overrides):
    old_code = checkout(BEFORE_PROTOCOL, tmp_path)
    base = {k: v for k, v in tiny_overrides.items() if k != "data.num_labels"}
    before = _train(old_code, base, tmp_path / "before")
    after = _train(ROOT, base | PROTOCOL_PRESETS["all-factors"], tmp_path / "after")
    shared = sorted(k for k, v in before.items() if isinstance(v, float) and k in after and "images_per_s" not in k
                    and "wall" not in k)
    assert len(shared) > 20 and "disentanglement" in shared and "encoder/final/nce_content" in shared
    assert {k: before[k] for k in shared} == {k: after[k] for k in shared}
