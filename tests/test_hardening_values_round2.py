"""Issue 18, class 6, second look: evaluations that still crashed after training are refused before it, with
one line naming the key, exit 2, nothing written. The all-factors protocol's held-out split (it has its own
rule: a third of the held-out images tested, at most eval.num_test), the linear probe's eval.num_train images
(both protocols: one class made sklearn fail), FID's eval.num_test, and a weight file that holds a bare tensor
instead of a state dict (an AttributeError traceback for eval.lpips_weights and eval.inception_weights)."""

import dataclasses

import pytest
import torch
from test_hardening_values import KEYS, refused_before_work

from contralord.config import ConfigError, ContraLordConfig
from contralord.run.evaluation_checks import check_evaluation
from contralord.setup import Setup, build_data

ALL = {"eval.protocol": "all-factors"}


@pytest.mark.parametrize("setting, needle", [
    (ALL | {"eval.num_train": 1, "eval.num_test": 1}, "eval.num_train/eval.num_test: the all-factors evaluation"),
    (ALL | {"eval.num_train": 2, "eval.num_test": 1}, "eval.num_train/eval.num_test: the all-factors evaluation"),
    (ALL | {"eval.num_train": 5, "eval.num_test": 2}, "2 of them tested"),
    (ALL | {"eval.num_train": 20, "eval.num_test": 5}, "5 of them tested"),  # 12 orientations in 20 fitted images
    ({"eval.num_train": 1, "eval.num_test": 100}, "eval.num_train: the linear probe is fitted on 1 training"),
    (ALL | {"eval.num_train": 1, "eval.num_test": 100}, "eval.num_train: the linear probe is fitted on 1 training"),
])
def test_evaluation_that_fails_after_training__refused_before(tmp_path, tiny_overrides, capsys, setting, needle):
    refused_before_work(tmp_path, capsys, tiny_overrides | setting, needle)


@pytest.mark.parametrize("setting", [ALL, ALL | {"eval.num_train": 40, "eval.num_test": 20},
                                     {"eval.num_train": 3, "eval.num_test": 100}])
def test_evaluation_that_runs__accepted(tiny_overrides, setting):
    """The same rules pass configs whose evaluation completes (each was trained to the end once, by hand)."""
    cfg = ContraLordConfig.from_overrides(tiny_overrides | setting)
    check_evaluation(Setup.of(cfg, build_data(cfg)))


def test_fid_on_one_image__refused(tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"eval.num_test": 1, "eval.num_train": 200})
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, inception_weights="/any/inception.pt"))
    with pytest.raises(ConfigError, match="^eval.num_test: FID"):
        check_evaluation(Setup.of(cfg, build_data(cfg)))


@pytest.mark.parametrize("key", KEYS)
def test_weight_file_holding_a_bare_tensor__one_line(tmp_path, tiny_overrides, capsys, key):
    path = tmp_path / "weights.pt"
    torch.save(torch.zeros(3), path)
    line = refused_before_work(tmp_path, capsys, tiny_overrides | {key: path}, f"{key}: {str(path)!r}")
    assert "state dict" in line


def test_cars3d_mat_declaring_huge_renders_under_the_default_cap__refused(tmp_path, tiny_overrides, capsys):
    """The issue's 32 MB file that inflated to 7 GiB declares renders of side ~5000: under the default
    data.max_array_gib (16) it passed; a model file's side is now at most 1024 (the release's is 128). The
    header is forged (an 8-pixel file whose dims say 5000), so nothing large is written or read."""
    import struct

    import numpy as np
    import scipy.io

    root = tmp_path / "cars"
    root.mkdir()
    path = root / "car_001.mat"
    scipy.io.savemat(path, {"im": np.zeros((8, 8, 3, 24, 4), np.uint8)})
    raw = path.read_bytes()
    dims = struct.pack("<5i", 8, 8, 3, 24, 4)
    assert raw.count(dims) == 1
    path.write_bytes(raw.replace(dims, struct.pack("<5i", 5000, 5000, 3, 24, 4)))
    data = {"data.name": "cars3d", "data.path": root, "data.image_size": 32, "data.size": 0}
    line = refused_before_work(tmp_path, capsys, tiny_overrides | data, "car_001.mat: key 'im' declares renders of")
    assert "side 5000, expected at most 1024" in line and "6.71 GiB" in line
