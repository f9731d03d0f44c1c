"""CodeCache: codes equal separate ``encode`` calls (to float rounding), and each image is encoded once.

Bit-for-bit equality holds where the CPU's GEMM kernels give a row the same bits whatever else is in its batch
(the AMD EPYC machines this was first measured on); on an Intel Xeon, MKL/oneDNN pick other blockings for
other batch sizes and the last bits of a code move with its batch (measured: 2 of 2 parametrisations differ).
So the test asks for equality to float32 rounding, which every CPU meets."""

import numpy as np
import pytest
import torch

from contralord import encoding
from contralord.config import ContraLordConfig
from contralord.encoding import PARTS, CodeCache, encode
from contralord.run.trainer import train
from contralord.setup import Setup, build_data
from contralord.stage2.encoder_stage import build_online

SMALL_BATCH = 16  # 96 images make 6 batches, so that the cache's batches hold other images than encode's


def _online_and_data(tiny_overrides, backbone="lord"):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"encoder.backbone": backbone})
    data = build_data(cfg)
    online = build_online(Setup.of(cfg, data), latent=None)
    for module in online.modules():  # resnet18's running statistics as after training: eval mode matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
    return online, data


@pytest.mark.parametrize("backbone", ["lord", "resnet18"])
def test_code_cache__equals_separate_encodes(tiny_overrides, backbone, monkeypatch):
    monkeypatch.setattr(encoding, "BATCH", SMALL_BATCH)
    online, data = _online_and_data(tiny_overrides, backbone)
    cpu = torch.device("cpu")
    scored = torch.randperm(len(data), generator=torch.Generator().manual_seed(2))  # every image, shuffled
    probe = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:60]  # a shuffled subset
    cache = CodeCache(online, data.images, cpu)
    for index in (probe, scored, probe[:7]):
        expected, got = encode(online, data.images, index, cpu), cache(index)
        assert expected.keys() == got.keys() == set(PARTS)
        for name in PARTS:
            assert got[name].dtype == np.float64 and got[name].flags.c_contiguous
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert online.training  # the encoder is handed back in the mode it came in


def test_code_cache__encodes_each_image_once(tiny_overrides):
    online, data = _online_and_data(tiny_overrides)
    seen = []
    online.backbone.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    cache = CodeCache(online, data.images, torch.device("cpu"))
    first = torch.arange(0, 60)
    cache(first), cache(first.flip(0)), cache(torch.arange(30, len(data)))
    assert sum(seen) == len(data) == cache.num_encoded  # 60, then nothing, then the 36 not yet seen


def test_train__encodes_each_training_image_once_at_the_end(tiny_overrides, tmp_path, monkeypatch):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    data = build_data(cfg)
    encoded = []  # positions of the training images, per encode call
    counting = lambda online, images, index, device: (  # noqa: E731
        encoded.extend(index.tolist()) if images is data.images else None, encode(online, images, index, device))[1]
    monkeypatch.setattr(encoding, "encode", counting)
    train(cfg, tmp_path, setup=Setup.of(cfg, data))
    assert sorted(encoded) == list(range(len(data)))  # summary, scored codes and probe: each image once
