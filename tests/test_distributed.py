"""A 2-process gloo run must equal 1 process with the full batch (lightly's DDP test).

What would break the equality, and why it holds here: BatchNorm (batch statistics differ per rank;
the LORD encoder has none), augmentations drawn per process (ours are drawn for the global batch
from a (seed, step) generator and sliced per rank), a loss averaged over the local batch with a
different normaliser (DDP averages gradients over ranks, which equals the global-batch mean here),
and queues filled with local keys only (we all-gather keys before enqueueing).
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from contralord.config import ContraLordConfig
from contralord.models.latent import ImageCodes
from contralord.presets import PROTOCOL_PRESETS
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training import distributed
from contralord.training.runtime import DDPRuntime, LocalRuntime

STEPS = 3


# stage 2 under the first protocol's readings, the paper's (labelled-factor codes, online-encoded
# positives with gradient, projections), and with the stage-1 code as the anchor
VARIANTS = {"first-protocol": PROTOCOL_PRESETS["all-factors"], "paper-protocol": {},
            "stage1-anchor": {"encoder.anchor": "stage1"}}


def _cfg(tiny, variant):
    return ContraLordConfig.from_overrides(tiny | VARIANTS[variant] | {"encoder.epochs": 2, "encoder.momentum": 0.9})


def _run_steps(cfg, cache, runtime):
    data = build_data(cfg)
    latent = train_latent(Setup.of(cfg, data), cache)
    trainer = EncoderTrainer(Setup.of(cfg, data), latent, runtime)
    totals = [trainer.step(s // 3, s % 3, s)["total"] for s in range(STEPS)]
    return trainer, totals


def _worker(rank, world, init_file, tiny, variant, cache, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        trainer, totals = _run_steps(_cfg(tiny, variant), cache, DDPRuntime())
        torch.save({"totals": totals, "online": trainer.online.state_dict(),
                    "queue_c": trainer.momentum.content_queue.features.clone(),
                    "queue_r": trainer.momentum.residual_queue.features.clone(),
                    "ptr": int(trainer.momentum.content_queue.ptr)}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_process_gloo__equals_one_process_full_batch(tmp_path, tiny_overrides, variant):
    cfg = _cfg(tiny_overrides, variant)
    single, totals = _run_steps(cfg, tmp_path / "cache", LocalRuntime())  # also writes the stage-1 cache
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), tiny_overrides, variant, str(tmp_path / "cache"),
                            str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in ranks:  # queues identical across ranks and equal to the single process's
        torch.testing.assert_close(r["queue_c"], single.momentum.content_queue.features, atol=1e-5, rtol=0)
        torch.testing.assert_close(r["queue_r"], single.momentum.residual_queue.features, atol=1e-5, rtol=0)
        assert r["ptr"] == int(single.momentum.content_queue.ptr)
        for name, value in single.online.state_dict().items():
            torch.testing.assert_close(r["online"][name], value, atol=1e-5, rtol=1e-4, msg=name)
    mean_of_ranks = [(a + b) / 2 for a, b in zip(ranks[0]["totals"], ranks[1]["totals"], strict=True)]
    assert mean_of_ranks == pytest.approx(totals, rel=1e-5)


def _merge_worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        codes = ImageCodes(6, 2, 1, 0.05, torch.Generator().manual_seed(0))
        owned = torch.arange(6)[torch.arange(6) % world == rank]
        codes(owned)  # marks this rank's rows as touched
        with torch.no_grad():
            codes.content[owned] = float(rank + 1) * 10
        moment = torch.full((6, 2), -1.0)
        moment[owned] = float(rank + 1)
        codes.merge_across_ranks([moment])
        torch.save({"content": codes.content.detach().clone(), "moment": moment}, os.path.join(out, f"m{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_image_codes_merge__each_rank_gets_every_owned_row(tmp_path):
    """Stage 1 keeps per-image codes out of DDP; the merge must hand every rank every row."""
    assert distributed.world_size() == 1
    mp.spawn(_merge_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = torch.tensor([10.0, 20.0] * 3).unsqueeze(1).expand(6, 2)
    for r in range(2):
        saved = torch.load(tmp_path / f"m{r}.pt")
        torch.testing.assert_close(saved["content"], expected)
        torch.testing.assert_close(saved["moment"], expected / 10)
