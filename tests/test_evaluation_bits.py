"""Evaluating with each image encoded once gives the numbers of the code that encoded them per metric.

The package as of ``BEFORE_SHARED_CODES`` (the last commit before ``contralord.encoding.CodeCache``:
every metric encoded its own images, the training images twice under partial-labels and a third time
for the summary) is taken from its archive in tests/history/ and trains the same run beside the current code; every
number of metrics.json and summary.json must be identical, bit for bit. The sizes make the encoding
batches differ between the two (300 images: batches of 256 and 44; the probe's 200 and the summary's
250 images sit in other batches than in the scored set), which is what the sharing could break.
"""

import math

import pytest
from old_code import ROOT, checkout, train_cli

BEFORE_SHARED_CODES = "78214e1397f2b4ceba686a2f4fa9cd78d95157cb"
SIZES = {"data.size": 300, "eval.num_train": 200, "eval.num_test": 100, "run.eval_size": 250}
TIMINGS = {"time/stage1", "time/train", "time/eval"}  # wall clock: the only new keys, never compared


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["partial-labels", "all-factors"])
def test_evaluate__bit_identical_to_encoding_per_metric(tmp_path, tiny_overrides, protocol):
    overrides = tiny_overrides | SIZES | {"eval.protocol": protocol}
    old_metrics, old_summary = train_cli(checkout(BEFORE_SHARED_CODES, tmp_path), overrides, tmp_path / "before")
    new_metrics, new_summary = train_cli(ROOT, overrides, tmp_path / "after")
    assert new_metrics == old_metrics
    assert new_summary.keys() - old_summary.keys() == TIMINGS
    assert all(isinstance(new_summary[k], float) and math.isfinite(new_summary[k]) for k in TIMINGS)
    same = {k for k in old_summary if "images_per_s" not in k and k != "machine"}  # throughput is wall clock too
    assert {k: new_summary[k] for k in same} == {k: old_summary[k] for k in same}
    # the machine record gained the BLAS thread count since (its id changes only where it differs from torch's)
    fields = set(old_summary["machine"]) - {"id"}
    assert {k: new_summary["machine"][k] for k in fields} == {k: old_summary["machine"][k] for k in fields}
    assert "encoder/eval/content_r2" in same and "encoder/eval/probe_top1" in same
