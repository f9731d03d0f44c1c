"""The modules both stages build from a run's setup: the generator G and the reconstruction loss l (Eq. 1-2)."""

from __future__ import annotations

import torch

from contralord.config import ContraLordConfig
from contralord.losses import bce_reconstruction_loss, reconstruction_loss
from contralord.models.generator import Generator
from contralord.models.perceptual import VGGPerceptualLoss
from contralord.setup import Setup


def build_generator(setup: Setup) -> Generator:
    """G for a run: the code sizes and style input follow its ``CodeLayout``."""
    cfg = setup.cfg
    class_dim, content_dim, residual_dim = setup.layout.dims
    return Generator(class_dim, content_dim, residual_dim, setup.data.channels, cfg.data.image_size,
                     width=cfg.latent.generator_width, style_from_codes=class_dim == 0)


def build_recon_loss(cfg: ContraLordConfig, device: torch.device):
    """l of Eq. 1-2: MSE, binary cross-entropy (zerodim's dSprites loss), or LORD's VGG16 perceptual loss from
    user-supplied weights."""
    if cfg.latent.recon_loss == "mse":
        return reconstruction_loss
    if cfg.latent.recon_loss == "bce":
        return bce_reconstruction_loss
    return VGGPerceptualLoss(cfg.latent.vgg_weights or None).to(device)
