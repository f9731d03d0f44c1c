"""Projection heads h_d, h_c, h_r on top of the stage-2 backbone f (paper Sec. 3.3, Eqs. 2-5).

One backbone feature f(x) feeds three heads: h_d predicts the class code d, h_c the content code g^c and
h_r the residual code g^r. Their outputs are regressed onto the stage-1 codes (Eq. 3), decoded by the
generator (Eq. 2), and the content / residual outputs are the embeddings of the two InfoNCE losses
(Eqs. 4-5).
"""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MLP head: ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``; ``hidden_dim=0`` gives one Linear.

    Args:
        in_dim: input feature size F.
        out_dim: output size D.
        hidden_dim: hidden size; 0 means a single linear layer (LORD's encoders end in one Linear).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 0) -> None:
        super().__init__()
        if hidden_dim < 0:
            raise ValueError(f"encoder.head_hidden_dim must be >= 0, got {hidden_dim}")
        self.out_dim = out_dim
        if out_dim == 0:  # an absent code (no class code under the labelled-factor structure)
            self.net = nn.Sequential()
        elif hidden_dim == 0:
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Map features (B, F) to (B, D)."""
        if self.out_dim == 0:
            return x.new_zeros(x.shape[0], 0)  # (B, 0)
        return self.net(x)  # (B, D)


class EncoderHeads(nn.Module):
    """The three heads h_d, h_c, h_r of Eqs. 2-3 on top of one backbone feature.

    Args:
        feat_dim: backbone feature size F.
        class_dim: Dd, size of the class code d.
        content_dim: Dc, size of the content code g^c.
        residual_dim: Dr, size of the residual code g^r.
        hidden_dim: hidden size of each head (0: linear heads).
    """

    def __init__(self, feat_dim: int, class_dim: int, content_dim: int, residual_dim: int,
                 hidden_dim: int = 0) -> None:
        super().__init__()
        self.class_head = ProjectionHead(feat_dim, class_dim, hidden_dim)
        self.content_head = ProjectionHead(feat_dim, content_dim, hidden_dim)
        self.residual_head = ProjectionHead(feat_dim, residual_dim, hidden_dim)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Apply the three heads.

        Args:
            features: f(x), shape (B, F).

        Returns:
            ``(class_code, content_code, residual_code)`` with shapes (B, Dd), (B, Dc), (B, Dr).
        """
        d = self.class_head(features)  # (B, Dd)
        g_c = self.content_head(features)  # (B, Dc)
        g_r = self.residual_head(features)  # (B, Dr)
        return d, g_c, g_r
