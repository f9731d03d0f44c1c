"""Stage 1 training loop: embedding optimisation (ContraLORD Sec. 3.2, Eq. 1; Algorithm 1 lines 3-7).

L_opt = l(G(d_i, g^c_i + z, g^r_i + z), x_i) + lambda (||g^c_i||^2 + ||g^r_i||^2), z ~ N(0, sigma^2 I).
Adam (betas 0.5, 0.999) with the code tables at 10x the generator's learning rate and cosine decay,
as LORD. The result (codes + generator) is an artifact keyed by a hash of the stage-1 config, the seed
and the data fingerprint, so later stage-2 runs and whole sweeps reuse it instead of retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from contralord.latent_result import ARTIFACT, LatentResult, latent_key, load_latent
from contralord.losses import code_penalty_loss
from contralord.models.build import build_generator, build_recon_loss
from contralord.models.latent import ImageCodes, LatentDecoder
from contralord.setup import Setup
from contralord.stage1.latent_base import CodeTableTrainer
from contralord.stage1.latent_factors import FactorTrainer
from contralord.training import checkpoint, distributed, sampling
from contralord.training.loop import LoopSpec, run_loop
from contralord.training.precision import autocast, fast_images, fast_module
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import MetricsLogger, NullLogger

CHECKPOINT = "checkpoint.pt"


class _LatentState(nn.Module):
    """Everything stage 1 trains, in one module so one state_dict round-trips it."""

    def __init__(self, setup: Setup):
        super().__init__()
        cfg, data = setup.cfg, setup.data
        torch.manual_seed(cfg.run.seed)  # the generator's layers draw from the global RNG
        lat, rng = cfg.latent, torch.Generator().manual_seed(cfg.run.seed)
        self.codes = ImageCodes(len(data), lat.content_dim, lat.residual_dim, lat.init_scale, rng)
        self.decoder = LatentDecoder(data.num_classes, lat.class_dim, lat.init_scale,
                                     build_generator(setup), rng)


def train_latent(setup: Setup, cache_dir: str | Path, runtime: LocalRuntime | None = None,
                 logger: MetricsLogger | None = None) -> LatentResult:
    """Train stage 1, or load it when the artifact for this config and data already exists.

    An interrupted stage 1 resumes from ``<cache_dir>/<key>/checkpoint.pt`` (same key = same config).
    """
    runtime, logger, cfg = runtime or LocalRuntime(), logger or NullLogger(), setup.cfg
    key = latent_key(setup)
    folder = Path(cache_dir) / key
    if (folder / ARTIFACT).is_file():
        return load_latent(folder / ARTIFACT, reused=True)
    trainer = build_trainer(setup, runtime)
    start = trainer.resume(folder / CHECKPOINT)
    spe = sampling.steps_per_epoch(len(setup.data), cfg.latent.batch_size)
    total = spe * cfg.latent.epochs
    spec = LoopSpec("latent", cfg.latent.epochs, spe, cfg.latent.batch_size, cfg.run.checkpoint_every,
                    history=list(trainer.history),
                    progress=runtime.progress(total, start, f"[stage 1, seed {cfg.run.seed}]"))
    save = lambda step: trainer.save(folder / CHECKPOINT, step, spec.history)  # noqa: E731
    run_loop(spec, start, trainer.step, save, logger, runtime.report)
    spec.progress.close()
    trainer.merge()
    metrics = spec.history[-1] if spec.history else {}
    checkpoint.save_atomic(trainer.artifact(key, metrics, logger), folder / ARTIFACT)
    distributed.barrier()
    return load_latent(folder / ARTIFACT, reused=False)


def build_trainer(setup: Setup, runtime: LocalRuntime):
    """Stage 1's trainer for the run's code structure (``Setup.structure``)."""
    if setup.structure == "class":
        return _LatentTrainer(setup, runtime)
    torch.manual_seed(setup.cfg.run.seed)  # the generator's layers draw from the global RNG
    return FactorTrainer(setup, runtime, build_generator(setup), build_recon_loss(setup.cfg, runtime.device))


class _LatentTrainer(CodeTableTrainer):
    """Holds stage 1's modules and optimiser; ``step`` is one iteration of Eq. 1."""

    def __init__(self, setup: Setup, runtime: LocalRuntime):
        cfg, data = setup.cfg, setup.data
        self.cfg, self.data, self.device = cfg, data, runtime.device
        self.state = _LatentState(setup).to(self.device)
        self.decoder = fast_module(runtime.wrap_model(self.state.decoder), cfg.run)
        codes = [self.state.decoder.class_codes, self.state.codes.content, self.state.codes.residual]
        self.optimizer = torch.optim.Adam([
            {"params": self.state.decoder.generator.parameters(), "lr": cfg.latent.lr},
            {"params": codes, "lr": cfg.latent.lr_codes},
        ], betas=(0.5, 0.999))
        total = cfg.latent.epochs * sampling.steps_per_epoch(len(data), cfg.latent.batch_size)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        self.recon = build_recon_loss(cfg, self.device)

    def step(self, epoch: int, step_in_epoch: int, step: int) -> dict[str, float]:
        lat, world = self.cfg.latent, distributed.world_size()
        local = lat.batch_size // world
        order = sampling.owned_order(len(self.data), self.cfg.run.seed, "latent", epoch)
        index = order[step_in_epoch * local:(step_in_epoch + 1) * local]  # (B_local,) this rank's images
        x = fast_images(self.data.images[index].to(self.device).float().div_(255), self.cfg.run)  # (B, C, H, W)
        rng = sampling.step_generator(self.cfg.run.seed, "latent", step)
        z = torch.randn(lat.batch_size, lat.content_dim + lat.residual_dim, generator=rng)  # (B_global, Dc+Dr)
        zc, zr = z[sampling.rank_slice(lat.batch_size)].to(self.device).split([lat.content_dim, lat.residual_dim], 1)
        content, residual = self.state.codes(index.to(self.device))  # (B, Dc), (B, Dr)
        classes = self.data.classes[index].to(self.device)  # (B,)
        with autocast(self.cfg.run, self.device):
            x_hat = self.decoder(classes, content + lat.noise_std * zc, residual + lat.noise_std * zr)  # (B, C, H, W)
            rec, penalty = self.recon(x_hat, x), code_penalty_loss(content, residual)
            total = rec + lat.code_penalty * penalty
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if world > 1:  # the code tables are not DDP-averaged: match the global-batch mean's gradient
            for table in (self.state.codes.content, self.state.codes.residual):
                table.grad.div_(world)
        self.optimizer.step()
        self.scheduler.step()
        return {"total": total.item(), "recon": rec.item(), "code_penalty": penalty.item(), "lr": lr}

    def code_tables(self) -> list[nn.Parameter]:
        return [self.state.codes.content, self.state.codes.residual]

    def artifact(self, key: str, metrics: dict[str, float], logger: MetricsLogger) -> dict[str, Any]:
        codes, decoder = self.state.codes, self.state.decoder
        return {"key": key, "content": codes.content.detach().cpu(), "residual": codes.residual.detach().cpu(),
                "class_codes": decoder.class_codes.detach().cpu(),
                "generator": {k: v.cpu() for k, v in decoder.generator.state_dict().items()},
                "metrics": metrics, "config": self.cfg.to_flat_dict(), "data_fingerprint": self.data.fingerprint}
