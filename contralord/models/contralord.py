"""Stage 2 of ContraLORD: the encoder, its three heads, momentum encoders and queues (Sec. 3.3).

f is the backbone; h_d, h_c, h_r the class, content and residual heads. f_m^c and f_m^r, the content
and residual momentum encoders, are EMAs of (f, h_c) and (f, h_r). Both EMAs of f use the same m and
the same online f, so their backbones are equal at every step: with ``shared_momentum_backbone`` one
EMA backbone feeds two EMA heads, the same math for half the key-side cost (a test proves the
equality against two separate copies). Each branch has its own queue of K keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from contralord.models.momentum import init_momentum, update_momentum
from contralord.models.queue import FeatureQueue


class EncoderOutput(NamedTuple):
    class_code: torch.Tensor  # (B, Dd) h_d(f(x))
    content: torch.Tensor  # (B, Dc) h_c(f(x))
    residual: torch.Tensor  # (B, Dr) h_r(f(x))


class Projectors(nn.Module):
    """The InfoNCE projections of h_c and h_r (``encoder.projection_dim``; Identity when 0).

    Normalising a low-dimensional code onto the sphere couples its axes (a 3-dim labelled-factor
    code would have to trade one factor against another to move on S^2), so the contrastive losses
    act on an MLP projection of the code (SimCLR / MoCo v2), and the code itself stays free.
    """

    def __init__(self, content_dim: int, residual_dim: int, projection_dim: int, hidden: int = 128):
        super().__init__()
        build = lambda d: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, projection_dim))  # noqa: E731
        self.content = build(content_dim) if projection_dim else nn.Identity()
        self.residual = build(residual_dim) if projection_dim else nn.Identity()


class OnlineEncoder(nn.Module):
    """f followed by h_d, h_c, h_r; optionally decodes through the stage-1 generator for L_rec."""

    def __init__(self, backbone: nn.Module, heads: nn.Module, generator: nn.Module | None = None,
                 projectors: Projectors | None = None):
        super().__init__()
        self.backbone, self.heads, self.generator = backbone, heads, generator
        self.projectors = projectors or Projectors(0, 0, 0)

    def forward(self, x: torch.Tensor, decode: bool = False, num_decoded: int | None = None,
                project: bool = False, stage1: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, C, H, W) -> (EncoderOutput, reconstruction, projections).

        The reconstruction G(h_d, h_c, h_r) covers the first ``num_decoded`` images (default all), or
        is None without ``decode``. With ``project``, the projections are (content (B [+ n], P),
        residual (B [+ n], P)) of h_c and h_r, followed by those of the stage-1 codes ``stage1``
        ((n, Dc), (n, Dr)) when given; else None.
        """
        out = EncoderOutput(*self.heads(self.backbone(x)))
        whole = num_decoded is None or num_decoded == len(x)  # no slice: a slice would reorder gradient sums
        first = out if whole else EncoderOutput(*(t[:num_decoded] for t in out))
        x_hat = self.generator(*first) if decode else None  # G(h_d, h_c, h_r), Eq. 2
        projected = None
        if project:
            content, residual = out.content, out.residual
            if stage1 is not None:
                content, residual = torch.cat([content, stage1[0]]), torch.cat([residual, stage1[1]])
            projected = (self.projectors.content(content), self.projectors.residual(residual))
        return out, x_hat, projected


class _Branch(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _key_heads(online: OnlineEncoder) -> tuple[nn.Module, nn.Module]:
    """The content and residual key heads: h_c then its projection, h_r then its projection."""
    heads, proj = online.heads, online.projectors
    if isinstance(proj.content, nn.Identity):  # no projection: the heads themselves (parameter names kept)
        return heads.content_head, heads.residual_head
    return nn.Sequential(heads.content_head, proj.content), nn.Sequential(heads.residual_head, proj.residual)


class MomentumEncoders(nn.Module):
    """f_m^c and f_m^r with their queues.

    Args:
        online: the OnlineEncoder whose backbone and heads are tracked.
        queue_size: K.
        dims: (Dc, Dr), the content and residual key dimensions.
        shared_backbone: one EMA backbone for both branches (exact, cheaper) or two copies.
        rng: generator for the queues' random initial keys.
        labelled_content: the content queue keeps a label per key (``FeatureQueue(labelled=True)``).
        indexed: both queues keep each key's training-image index (``encoder.mask_own_keys``).
    """

    def __init__(self, online: OnlineEncoder, queue_size: int, dims: tuple[int, int], shared_backbone: bool,
                 rng: torch.Generator, labelled_content: bool = False, indexed: bool = False):
        super().__init__()
        self.shared_backbone = shared_backbone
        content_head, residual_head = _key_heads(online)
        if shared_backbone:
            self.backbone_momentum = init_momentum(online.backbone)
            self.content_head_momentum = init_momentum(content_head)
            self.residual_head_momentum = init_momentum(residual_head)
        else:
            self.content_encoder_momentum = init_momentum(_Branch(online.backbone, content_head))
            self.residual_encoder_momentum = init_momentum(_Branch(online.backbone, residual_head))
        self.content_queue = FeatureQueue(queue_size, dims[0], generator=rng, labelled=labelled_content,
                                          indexed=indexed)
        self.residual_queue = FeatureQueue(queue_size, dims[1], generator=rng, indexed=indexed)

    def momentum_pairs(self, online: OnlineEncoder) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs that the EMA update walks."""
        content_head, residual_head = _key_heads(online)
        if self.shared_backbone:
            return [(online.backbone, self.backbone_momentum), (content_head, self.content_head_momentum),
                    (residual_head, self.residual_head_momentum)]
        return [(_Branch(online.backbone, content_head), self.content_encoder_momentum),
                (_Branch(online.backbone, residual_head), self.residual_encoder_momentum)]

    @torch.no_grad()
    def update(self, online: OnlineEncoder, m: float) -> None:
        for online_part, momentum_part in self.momentum_pairs(online):
            update_momentum(online_part, momentum_part, m)

    @torch.no_grad()
    def keys(self, x: torch.Tensor, content: bool = True, residual: bool = True) -> tuple[torch.Tensor | None, ...]:
        """x (B, C, H, W) query views -> (g^c_q (B, Dc) or None, g^r_q (B, Dr) or None)."""
        if self.shared_backbone:
            features = self.backbone_momentum(x) if (content or residual) else None  # (B, F) once
            kc = self.content_head_momentum(features) if content else None
            kr = self.residual_head_momentum(features) if residual else None
            return kc, kr
        kc = self.content_encoder_momentum(x) if content else None
        kr = self.residual_encoder_momentum(x) if residual else None
        return kc, kr

