"""Named presets: flat dotted overrides, applied left to right before the user's ``--set``.

Scale presets (one of): ``smoke`` (the whole pipeline in seconds), ``cpu`` (the quickstart scale on 2
cores), ``paper`` (Sec. 4.1: ResNet-50, 64x64, batch 256, K=12800, 200 epochs, d=256, g=128).
Method presets (any, after a scale preset), the rows of Table 2 on the same service:
``contralord`` (Eq. 6, all four losses; the default), ``lord`` (LORD: per-class codes d from the class
labels of every image, then amortisation with L_rec + L_sup), ``gabbay`` (Gabbay, Cohen & Hoshen 2021,
zerodim: the labelled-factor stage 1, then amortisation with L_rec + L_sup, no contrastive term, scored as
zerodim scores it: the stage-1 classifiers' codes softmax(C_j(x)) @ E_j, ``eval.scored_code=classifier``),
``locatello`` (Locatello et al. 2020: a semi-supervised beta-VAE whose labelled latents are supervised
by the same few labels; ``contralord.stage2.vae_baseline``),
``moco`` (instance contrastive only: a queue, two augmented views), ``simclr`` (in-batch NT-Xent, no
queue, no momentum encoder).
Protocol preset: ``all-factors`` restores the first protocol and every reading it used (LORD class
codes, momentum-encoded positives, no projection, L_sup summed over dims): runs before the paper's
protocol existed are reproduced bit for bit by ``--preset cpu --preset all-factors``.
"""

from __future__ import annotations

from typing import Any

from contralord.config import PRE_PROTOCOL_VALUES, ConfigError, LossConfig

SCALE_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data.name": "shapes3d", "data.image_size": 32, "data.size": 512,
        "latent.class_dim": 16, "latent.content_dim": 8, "latent.residual_dim": 8,
        "latent.generator_width": 32, "latent.epochs": 2, "latent.batch_size": 64, "latent.best_reference_steps": 10,
        "encoder.backbone_width": 16, "encoder.epochs": 2, "encoder.batch_size": 64, "encoder.queue_size": 256,
        "run.eval_size": 256, "eval.num_train": 256, "eval.num_test": 128,
    },
    "cpu": {  # 2 cores: stage 1 ~30 min at 1 thread with the per-factor classifiers, each stage-2 run ~2 min
        # (README, "Measured")
        "data.name": "shapes3d", "data.image_size": 32, "data.size": 2048,
        "latent.class_dim": 32, "latent.content_dim": 16, "latent.residual_dim": 16,
        "latent.generator_width": 64, "latent.epochs": 30, "latent.batch_size": 32,
        "latent.noise_std": 0.3, "latent.lr": 3e-4, "latent.lr_codes": 0.05, "latent.entropy_start_epoch": 3,
        "encoder.backbone_width": 32, "encoder.epochs": 5, "encoder.batch_size": 64,
        "encoder.queue_size": 1024, "encoder.temperature": 0.1, "encoder.momentum": 0.99,
        "run.eval_size": 2048, "eval.num_train": 2000, "eval.num_test": 1000,
    },
    "paper": {
        "data.name": "shapes3d", "data.image_size": 64, "data.size": 0,
        "latent.class_dim": 256, "latent.content_dim": 64, "latent.residual_dim": 64,
        "latent.generator_width": 256, "latent.epochs": 200, "latent.batch_size": 256,
        "encoder.backbone": "resnet50", "encoder.epochs": 200, "encoder.batch_size": 256,
        "encoder.queue_size": 12800, "run.eval_size": 10000,
    },
}

# Eq. 6's weights at their defaults (config.LossConfig), which every method preset shares
DEFAULT_WEIGHTS = {f"loss.{k}": getattr(LossConfig(), k) for k in ("rec", "sup", "con", "res")}

METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "contralord": {**DEFAULT_WEIGHTS, "run.method": "contralord"},
    "lord": {**DEFAULT_WEIGHTS, "loss.con": 0.0, "loss.res": 0.0, "latent.structure": "class", "run.method": "lord"},
    # zerodim copies the stage-1 classifiers as its labelled-factor encoder (frozen) and scores their codes
    "gabbay": {**DEFAULT_WEIGHTS, "loss.con": 0.0, "loss.res": 0.0, "latent.structure": "factors",
               "encoder.content_head": "stage1_frozen", "eval.scored_code": "classifier", "run.method": "gabbay"},
    "locatello": {"encoder.model": "vae", "latent.structure": "factors", "loss.rec": 1.0, "loss.sup": 0.0,
                  "loss.con": 0.0, "loss.res": 0.0, "loss.kl": 1.0, "loss.label": 1.0, "run.method": "locatello"},
    "moco": {"loss.rec": 0.0, "loss.sup": 0.0, "loss.con": 1.0, "loss.res": 0.0,
             "encoder.augment_anchor": True, "encoder.negatives": "queue", "encoder.positive": "momentum",
             "run.method": "moco"},
    "simclr": {"loss.rec": 0.0, "loss.sup": 0.0, "loss.con": 1.0, "loss.res": 0.0,
               "encoder.augment_anchor": True, "encoder.negatives": "batch", "run.method": "simclr"},
}

# the first protocol also weighted every term 1 (apply a method preset after this one, not before)
PROTOCOL_PRESETS: dict[str, dict[str, Any]] = {
    "all-factors": PRE_PROTOCOL_VALUES | {"loss.sup": 1.0, "loss.con": 1.0, "loss.res": 1.0},
}

PRESETS = SCALE_PRESETS | METHOD_PRESETS | PROTOCOL_PRESETS


def resolve_presets(names: list[str], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge the named presets left to right, then ``overrides``; unknown names raise ConfigError."""
    merged: dict[str, Any] = {}
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"--preset {name!r}: unknown preset (known: {', '.join(PRESETS)})")
        merged |= PRESETS[name]
    return merged | dict(overrides or {})
