"""Loss functions of ContraLORD (Eq. 1-6), pure: tensors in, scalar tensor out.

Conventions: reconstruction losses average over all pixels; code penalties and L_sup sum over the code
dimension and average over the batch (LORD's convention for its content-code decay). The InfoNCE
losses put the positive at logit index 0 and take the mean over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """l_2 reconstruction (Eq. 1-2, synthetic data): mean squared error over (B, C, H, W)."""
    return F.mse_loss(x_hat, x)


def bce_reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over (B, C, H, W), mean (zerodim's loss for dSprites, whose pixels are 0 or 1); the
    generator's sigmoid output is the Bernoulli mean. In float32 outside autocast (BCE is unsafe in half)."""
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        return F.binary_cross_entropy(x_hat.float(), x.float())


def code_penalty_loss(content: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """||g^c||^2 + ||g^r||^2 of Eq. 1 (before the lambda weight): content (B, Dc), residual (B, Dr)."""
    return content.pow(2).sum(dim=1).mean() + residual.pow(2).sum(dim=1).mean()


def supervision_loss(predicted: tuple[torch.Tensor, ...], targets: tuple[torch.Tensor, ...],
                     reduction: str = "mean") -> torch.Tensor:
    """L_sup (Eq. 3): sum over the heads of ||h(f(x_i)) - stage-1 code_i||^2, mean over the batch.

    ``reduction="mean"`` divides each head's squared error by its code size (LORD's convention, and
    what keeps L_sup on the scale of the per-pixel L_rec); ``"sum"`` is Eq. 3 as printed. A head of
    size 0 (no class code) adds nothing.

    Args:
        predicted: (d, g^c, g^r) head outputs, each (B, D_head).
        targets: the stage-1 codes of the same images, same shapes (no gradient).
        reduction: "mean" or "sum" over the code dimension.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss.sup_reduction: expected mean or sum, got {reduction!r}")
    terms = [(p - t.detach()).pow(2).sum(dim=1).mean() / (p.shape[1] if reduction == "mean" else 1)
             for p, t in zip(predicted, targets, strict=True) if p.shape[1]]
    return sum(terms) if terms else predicted[0].new_zeros(())


def info_nce_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                  temperature: float, positive_grad: bool = False,
                  not_negative: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of Eq. 4/5 with a queue of negatives.

    -log exp(a.p/tau) / (exp(a.p/tau) + sum_k exp(a.n_k/tau)), all vectors L2-normalised.

    Args:
        anchor: (B, D) online embeddings g_i (gradient flows here).
        positive: (B, D) embeddings g_q of the query view; no gradient (momentum keys) unless
            ``positive_grad`` (Algorithm 1 line 12's reading: the online f encodes the query).
        negatives: (K, D) queue keys g_k (no gradient).
        temperature: tau > 0.
        positive_grad: let the gradient flow into ``positive``.
        not_negative: (B, K) bool, True where queue key k is no negative of anchor i (it shares i's labelled
            factors: ``encoder.label_aware_negatives``); those logits are dropped from the denominator.
    """
    with _fp32(anchor):  # logits / tau amplify bf16 rounding: the similarities are computed in fp32
        a = F.normalize(_wide(anchor), dim=1)  # (B, D)
        p = F.normalize(_wide(positive if positive_grad else positive.detach()), dim=1)  # (B, D)
        n = F.normalize(_wide(negatives.detach()), dim=1)  # (K, D)
        l_pos = (a * p).sum(dim=1, keepdim=True)  # (B, 1)
        l_neg = a @ n.T  # (B, K)
        if not_negative is not None:
            l_neg = l_neg.masked_fill(not_negative, float("-inf"))  # exp(-inf) = 0: out of the sum
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (B, 1+K)
        labels = torch.zeros(a.shape[0], dtype=torch.long, device=a.device)  # positive at index 0
        return F.cross_entropy(logits, labels)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least fp32 (bf16 is widened; fp32 and fp64 stay as they are)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _fp32(x: torch.Tensor):
    """No autocast inside (a run under ``run.precision=bf16`` computes its contrastive logits in fp32)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent with in-batch negatives (the queue-free baseline).

    Each of the 2B views has its other view as positive and the remaining 2B-2 views as negatives.

    Args:
        z1, z2: (B, D) embeddings of two views of the same B images (gradient flows through both).
    """
    with _fp32(z1):
        z = F.normalize(_wide(torch.cat([z1, z2], dim=0)), dim=1)  # (2B, D)
        sim = z @ z.T / temperature  # (2B, 2B)
        sim = sim.masked_fill(torch.eye(sim.shape[0], dtype=torch.bool, device=z.device), float("-inf"))
        b = z1.shape[0]
        targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)  # (2B,) partner index
        return F.cross_entropy(sim, targets)
