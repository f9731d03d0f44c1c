"""Stage 1 training loop: embedding optimisation (ContraLORD Sec. 3.2, Eq. 1; Algorithm 1 lines 3-7).

L_opt = l(G(d_i, g^c_i + z, g^r_i + z), x_i) + lambda (||g^c_i||^2 + ||g^r_i||^2), z ~ N(0, sigma^2 I).
Adam (betas 0.5, 0.999) with the code tables at 10x the generator's learning rate and cosine decay,
as LORD. The result (codes + generator) is an artifact keyed by a hash of the stage-1 config, the seed
and the data fingerprint, so later stage-2 runs and whole sweeps reuse it instead of retraining.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contralord import checkpoint, distributed, labels, sampling
from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData
from contralord.latent_base import CodeTableTrainer
from contralord.latent_factors import FactorTrainer
from contralord.loop import LoopSpec, final_names, run_loop
from contralord.losses import bce_reconstruction_loss, code_penalty_loss, reconstruction_loss
from contralord.models.generator import Generator
from contralord.models.latent import ImageCodes, LatentDecoder
from contralord.models.perceptual import VGGPerceptualLoss
from contralord.precision import autocast, fast_images, fast_module
from contralord.runtime import LocalRuntime
from contralord.tracking import MetricsLogger, NullLogger

ARTIFACT = "latent.pt"
CHECKPOINT = "checkpoint.pt"
ARTIFACT_KEYS = ("key", "content", "residual", "class_codes", "generator", "metrics")


@dataclass
class LatentResult:
    """The stage-1 output that stage 2 needs."""

    key: str  # cache key (config hash + data fingerprint)
    path: Path  # the artifact file
    content: torch.Tensor  # (N, Dc) learned g^c per training image
    residual: torch.Tensor  # (N, Dr) learned g^r
    class_codes: torch.Tensor  # (num_classes, Dd) learned d per class
    generator_state: dict[str, torch.Tensor]
    metrics: dict[str, float]  # the last epoch's training metrics
    reused: bool  # True when loaded from the cache instead of trained
    factor_codes: dict[str, torch.Tensor] | None = None  # factors: the classifiers' and tables' state dict

    def classifiers(self, key: str) -> dict[str, torch.Tensor]:
        """``factor_codes``, or a ConfigError naming ``key`` (the setting that needs them) when this artifact
        was trained before stage 1's classifiers were kept."""
        if self.factor_codes is None:
            raise ConfigError(f"{key}: needs a stage-1 artifact with its classifiers; {self.path} has none (it was "
                              "trained before they were kept: retrain stage 1)")
        return self.factor_codes

    def final_metrics(self) -> dict[str, float]:
        """What stage 1 ended with, as ``latent/final/...``: its last epoch's training metrics and, for labelled
        factors, what it learnt from its labels (``FactorTrainer.diagnostics``). A trial's summary carries them,
        and the stage-1 MLflow run logs them at step 0, its final-evaluation step (``tune/stage1.py``)."""
        return final_names(self.metrics)


def latent_key(cfg: ContraLordConfig, data: ImageFactorData) -> str:
    """Hash of everything stage 1 depends on: data + latent sections, the seed, the data content and
    the code structure (``latent.structure=auto`` resolves through ``eval.protocol``)."""
    text = f"{labels.resolved(cfg, data).section_hash('data', 'latent')}/{cfg.run.seed}/{data.fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_generator(cfg: ContraLordConfig, data: ImageFactorData) -> Generator:
    """G for this config and data: the code sizes and style input follow ``labels.layout``."""
    class_dim, content_dim, residual_dim = labels.layout(cfg, data).dims
    return Generator(class_dim, content_dim, residual_dim, data.channels, cfg.data.image_size,
                     width=cfg.latent.generator_width, style_from_codes=class_dim == 0)


def build_recon_loss(cfg: ContraLordConfig, device: torch.device):
    """l of Eq. 1-2: MSE, binary cross-entropy (zerodim's dSprites loss), or LORD's VGG16 perceptual loss from
    user-supplied weights."""
    if cfg.latent.recon_loss == "mse":
        return reconstruction_loss
    if cfg.latent.recon_loss == "bce":
        return bce_reconstruction_loss
    return VGGPerceptualLoss(cfg.latent.vgg_weights or None).to(device)


class _LatentState(nn.Module):
    """Everything stage 1 trains, in one module so one state_dict round-trips it."""

    def __init__(self, cfg: ContraLordConfig, data: ImageFactorData):
        super().__init__()
        torch.manual_seed(cfg.run.seed)  # the generator's layers draw from the global RNG
        lat, rng = cfg.latent, torch.Generator().manual_seed(cfg.run.seed)
        self.codes = ImageCodes(len(data), lat.content_dim, lat.residual_dim, lat.init_scale, rng)
        self.decoder = LatentDecoder(data.num_classes, lat.class_dim, lat.init_scale,
                                     build_generator(cfg, data), rng)


def train_latent(cfg: ContraLordConfig, data: ImageFactorData, cache_dir: str | Path,
                 runtime: LocalRuntime | None = None, logger: MetricsLogger | None = None) -> LatentResult:
    """Train stage 1, or load it when the artifact for this config and data already exists.

    An interrupted stage 1 resumes from ``<cache_dir>/<key>/checkpoint.pt`` (same key = same config).
    """
    runtime, logger = runtime or LocalRuntime(), logger or NullLogger()
    key = latent_key(cfg, data)
    folder = Path(cache_dir) / key
    if (folder / ARTIFACT).is_file():
        return load_latent(folder / ARTIFACT, reused=True)
    trainer = build_trainer(cfg, data, runtime)
    start = trainer.resume(folder / CHECKPOINT)
    spe = sampling.steps_per_epoch(len(data), cfg.latent.batch_size)
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


def build_trainer(cfg: ContraLordConfig, data: ImageFactorData, runtime: LocalRuntime):
    """Stage 1's trainer for the config's code structure (``labels.structure``)."""
    if labels.structure(cfg, data) == "class":
        return _LatentTrainer(cfg, data, runtime)
    torch.manual_seed(cfg.run.seed)  # the generator's layers draw from the global RNG
    return FactorTrainer(cfg, data, runtime, build_generator(cfg, data), build_recon_loss(cfg, runtime.device))


def load_latent(path: str | Path, reused: bool = True) -> LatentResult:
    """Read a stage-1 artifact written by ``train_latent``."""
    try:
        saved = checkpoint.load(path, required=ARTIFACT_KEYS)
    except checkpoint.CheckpointError as error:
        raise checkpoint.CheckpointError(f"stage-1 artifact: {error}; remove {Path(path).parent} to retrain "
                                         "stage 1 for this config") from None
    return LatentResult(key=saved["key"], path=Path(path), content=saved["content"], residual=saved["residual"],
                        class_codes=saved["class_codes"], generator_state=saved["generator"],
                        metrics=saved["metrics"], reused=reused, factor_codes=saved.get("factor_codes"))


class _LatentTrainer(CodeTableTrainer):
    """Holds stage 1's modules and optimiser; ``step`` is one iteration of Eq. 1."""

    def __init__(self, cfg: ContraLordConfig, data: ImageFactorData, runtime: LocalRuntime):
        self.cfg, self.data, self.device = cfg, data, runtime.device
        self.state = _LatentState(cfg, data).to(self.device)
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
