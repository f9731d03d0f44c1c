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

from contralord.momentum import init_momentum, update_momentum
from contralord.queue import FeatureQueue


class EncoderOutput(NamedTuple):
    class_code: torch.Tensor  # (B, Dd) h_d(f(x))
    content: torch.Tensor  # (B, Dc) h_c(f(x))
    residual: torch.Tensor  # (B, Dr) h_r(f(x))


class OnlineEncoder(nn.Module):
    """f followed by h_d, h_c, h_r; optionally decodes through the stage-1 generator for L_rec."""

    def __init__(self, backbone: nn.Module, heads: nn.Module, generator: nn.Module | None = None):
        super().__init__()
        self.backbone, self.heads, self.generator = backbone, heads, generator

    def forward(self, x: torch.Tensor, decode: bool = False) -> tuple[EncoderOutput, torch.Tensor | None]:
        """x (B, C, H, W) -> (EncoderOutput, reconstruction (B, C, H, W) or None)."""
        out = EncoderOutput(*self.heads(self.backbone(x)))
        x_hat = self.generator(*out) if decode else None  # G(h_d, h_c, h_r), Eq. 2
        return out, x_hat


class _Branch(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class MomentumEncoders(nn.Module):
    """f_m^c and f_m^r with their queues.

    Args:
        online: the OnlineEncoder whose backbone and heads are tracked.
        queue_size: K.
        dims: (Dc, Dr), the content and residual key dimensions.
        shared_backbone: one EMA backbone for both branches (exact, cheaper) or two copies.
        rng: generator for the queues' random initial keys.
    """

    def __init__(self, online: OnlineEncoder, queue_size: int, dims: tuple[int, int], shared_backbone: bool,
                 rng: torch.Generator):
        super().__init__()
        self.shared_backbone = shared_backbone
        heads = online.heads
        if shared_backbone:
            self.backbone_momentum = init_momentum(online.backbone)
            self.content_head_momentum = init_momentum(heads.content_head)
            self.residual_head_momentum = init_momentum(heads.residual_head)
        else:
            self.content_encoder_momentum = init_momentum(_Branch(online.backbone, heads.content_head))
            self.residual_encoder_momentum = init_momentum(_Branch(online.backbone, heads.residual_head))
        self.content_queue = FeatureQueue(queue_size, dims[0], generator=rng)
        self.residual_queue = FeatureQueue(queue_size, dims[1], generator=rng)

    def momentum_pairs(self, online: OnlineEncoder) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs that the EMA update walks."""
        heads = online.heads
        if self.shared_backbone:
            return [(online.backbone, self.backbone_momentum), (heads.content_head, self.content_head_momentum),
                    (heads.residual_head, self.residual_head_momentum)]
        return [(_Branch(online.backbone, heads.content_head), self.content_encoder_momentum),
                (_Branch(online.backbone, heads.residual_head), self.residual_encoder_momentum)]

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

