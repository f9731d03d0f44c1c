"""Table 2's "Locatello et al." row: a semi-supervised beta-VAE (Locatello et al., "Disentangling
factors of variation using few labels", ICLR 2020), on the same data, labels and evaluation as ours.

The encoder (our backbone f with heads) gives a Gaussian posterior q(z|x) = N(mu, diag(exp(logvar)));
z = [z^c, z^r] where z^c holds one ``latent.factor_dim`` block per labelled factor (the supervised
latents) and z^r ``latent.residual_dim`` unsupervised ones, so h_c(f(x)) = mu^c is the labelled-factor
code that ``evaluation`` scores, exactly as for ContraLORD. The decoder is our generator, trained from
scratch (no stage 1). Per image (mean over the batch):
    L = loss.rec * sum_pixels (G(z) - x)^2 + loss.kl * KL(q(z|x) || N(0, I))
        + loss.label * sum_j BCE(sigmoid(mu^c_j), y_j / (n_j - 1))   (labelled images only)
The reconstruction is summed over pixels (the VAE's Gaussian log-likelihood up to a constant, which
is what gives beta its meaning); the supervised term is Locatello et al.'s "xent" variant on the first
dimension of each factor's block, with the factor's value index scaled to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contralord.models.contralord import EncoderOutput, OnlineEncoder


class SemiSupervisedVAE(OnlineEncoder):
    """An OnlineEncoder whose heads give the posterior means, plus log-variance heads."""

    def __init__(self, backbone: nn.Module, heads: nn.Module, generator: nn.Module, log_variance: nn.Module):
        super().__init__(backbone, heads, generator)
        self.log_variance = log_variance

    def forward(self, x: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None = None, **_):
        """x (B, C, H, W) -> (EncoderOutput of means, reconstruction of a posterior sample or None, KL (B,)).

        ``noise``: standard normal draws (B, Dc), (B, Dr) for the reparameterised sample.
        """
        features = self.backbone(x)  # (B, F)
        mean = EncoderOutput(*self.heads(features))
        if noise is None:
            return mean, None, None
        _, logvar_c, logvar_r = self.log_variance(features)  # (B, Dc), (B, Dr)
        z_c = mean.content + (0.5 * logvar_c).exp() * noise[0]  # (B, Dc)
        z_r = mean.residual + (0.5 * logvar_r).exp() * noise[1]  # (B, Dr)
        x_hat = self.generator(mean.class_code, z_c, z_r)  # (B, C, H, W)
        mu, logvar = torch.cat([mean.content, mean.residual], 1), torch.cat([logvar_c, logvar_r], 1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)  # (B,)
        return mean, x_hat, kl


def label_loss(content_mean: torch.Tensor, known: torch.Tensor, sizes: tuple[int, ...],
               supervised: list[int]) -> torch.Tensor:
    """Sum over labelled factors of BCE(sigmoid(mu^c_j), y_j / (n_j - 1)), mean over labelled images.

    Args:
        content_mean: (B, F_l * factor_dim) posterior means of the supervised latents.
        known: (B, F_l) factor values, -1 where the image carries no label.
        sizes: values per labelled factor.
        supervised: the supervised column of each factor's block (``labels.CodeLayout.first_columns``).
    """
    rows = known[:, 0] >= 0
    if not bool(rows.any()):
        return content_mean.new_zeros(())
    logits = content_mean[rows][:, supervised]  # (M, F_l)
    scale = torch.tensor([max(n - 1, 1) for n in sizes], dtype=logits.dtype, device=logits.device)
    targets = known[rows].to(logits.dtype) / scale  # (M, F_l) in [0, 1]
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1).mean()


def vae_terms(model: nn.Module, x: torch.Tensor, known: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor],
              sizes: tuple[int, ...], supervised: list[int]) -> dict[str, torch.Tensor]:
    """The three terms of the objective (before their weights) on a batch x (B, C, H, W)."""
    mean, x_hat, kl = model(x, noise=noise)
    rec = (x_hat - x).pow(2).flatten(1).sum(dim=1).mean()
    return {"rec": rec, "kl": kl.mean(), "label": label_loss(mean.content, known, sizes, supervised)}
