"""The summary of a trained run: both stages' final losses and how well stage 2's heads recover stage 1's codes."""

from __future__ import annotations

from typing import Any

import torch

from contralord.encoding import CodeCache
from contralord.latent_result import LatentResult
from contralord.setup import Setup
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training.loop import final_names


@torch.no_grad()
def summarize(setup: Setup, latent: LatentResult | None, trainer: EncoderTrainer,
              train_codes: CodeCache | None = None) -> dict[str, Any]:
    """Final losses of both stages, plus how well the heads recover the stage-1 codes on
    ``run.eval_size`` training images: class accuracy of the nearest stage-1 class code to h_d(f(x)),
    and R^2 of h_c / h_r against the stage-1 content / residual codes. (Disentanglement metrics and
    held-out evaluation belong to the evaluation pipeline.) ``train_codes``: the training images'
    codes, shared with the evaluation; by default a fresh ``CodeCache``."""
    cfg, data = setup.cfg, setup.data
    summary: dict[str, Any] = {"data_fingerprint": data.fingerprint, "num_images": len(data)}
    if latent is not None:
        summary |= {"latent_key": latent.key, "latent_reused": latent.reused}
        summary |= latent.final_metrics()
    if getattr(trainer, "history", None):
        summary |= final_names(trainer.history[-1])
    if latent is not None and cfg.run.eval_size:
        if train_codes is None:
            train_codes = CodeCache(trainer.online, data.images, trainer.device)
        summary |= _head_agreement(setup, latent, train_codes)
    return summary


def _head_agreement(setup: Setup, latent: LatentResult, train_codes: CodeCache) -> dict[str, float]:
    cfg, data = setup.cfg, setup.data
    n = min(cfg.run.eval_size, len(data))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.run.seed))[:n]
    codes = train_codes(index)
    d, gc, gr = (torch.from_numpy(codes[name]).float() for name in ("class_code", "content", "residual"))  # (n, D)
    r2 = lambda pred, target: float(1 - (pred - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum())  # noqa: E731
    agreement = {}
    if latent.class_codes.shape[1]:  # no class code under the labelled-factor structure
        nearest = torch.cdist(d, latent.class_codes).argmin(dim=1)  # (n,) class whose stage-1 code is closest
        agreement["encoder/eval/class_acc"] = float((nearest == data.classes[index]).float().mean())
    agreement |= per_dim_correlation(gc, latent.content[index], setup.layout.content_names)
    return agreement | {"encoder/eval/content_r2": r2(gc, latent.content[index]),
                        "encoder/eval/residual_r2": r2(gr, latent.residual[index])}


def per_dim_correlation(pred: torch.Tensor, target: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Pearson correlation of each dimension of h_c (n, D) with the same dimension of the stage-1 code, as
    ``encoder/eval/content_corr/<name>``, and their minimum: a pooled R^2 can look fine while the code of
    one factor (a small object's hue) is still far from its target. A constant dimension correlates 0."""
    p, t = pred.double() - pred.double().mean(0), target.double() - target.double().mean(0)  # (n, D)
    denominator = (p.norm(dim=0) * t.norm(dim=0)).clamp(min=1e-12)
    corr = ((p * t).sum(0) / denominator).tolist()  # (D,)
    result = {f"encoder/eval/content_corr/{name}": c for name, c in zip(names, corr, strict=True)}
    return result | {"encoder/eval/content_corr_min": min(corr)} if corr else result
