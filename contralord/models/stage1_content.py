"""h_c taken from stage 1's labelled-factor classifiers (``encoder.content_head=stage1_frozen|stage1_init``).

zerodim (Gabbay, Cohen & Hoshen 2021) never re-learns the labelled factors in its amortisation: it copies
stage 1's factor model (one classifier C_j and code table E_j per labelled factor) and trains only the
residual encoder. Here the copy becomes stage 2's content head: g^c = [softmax(C_j(x)) @ E_j]_j for every
image, no label used. ``stage1_frozen`` keeps the copy fixed (zerodim's choice: the content code, and so D
and MIG, are stage 1's); ``stage1_init`` starts from it and lets the stage-2 losses train it.

The classifiers read x through their own CNN trunks, not through f. To keep stage 2's one-backbone
interface (``heads(backbone(x))``, which the momentum encoders, the evaluation and the exported model use),
the trunks join the backbone: ``StackedBackbone`` returns [f(x), trunk_1(x), ...], the class and residual
heads (and so their momentum copies) read only the f(x) columns (``FirstColumns``), and
``ClassifierContentHead`` reads each trunk's columns.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contralord.models.latent import FactorCodes


class StackedBackbone(nn.Module):
    """x (B, C, H, W) -> [f(x), trunk_1(x), ..., trunk_T(x)] (B, F + T * F_t)."""

    def __init__(self, backbone: nn.Module, trunks: nn.ModuleList):
        super().__init__()
        self.backbone, self.trunks = backbone, trunks

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.backbone(x), *(trunk(x) for trunk in self.trunks)], dim=1)


class FirstColumns(nn.Module):
    """``head`` applied to the first ``width`` feature columns, f(x) of the stacked features."""

    def __init__(self, head: nn.Module, width: int):
        super().__init__()
        self.head, self.width = head, width

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features[:, :self.width])


class ClassifierContentHead(nn.Module):
    """[softmax(C_j(t_j)) @ E_j]_j (B, F_l * Df), where t_j are the columns of C_j's trunk in the stacked
    features (one trunk per factor, or one shared by all).

    Args:
        factor_codes: stage 1's ``FactorCodes``; its classifiers and tables become this head's.
        offset: F, where the trunk columns start in the stacked features.
        trunk_dim: F_t, each trunk's feature size.
    """

    def __init__(self, factor_codes: FactorCodes, offset: int, trunk_dim: int):
        super().__init__()
        self.classifiers, self.tables = factor_codes.classifiers, factor_codes.tables
        self.offset, self.trunk_dim = offset, trunk_dim
        self.shared_trunk = len(factor_codes.trunks) == 1

    def forward(self, features: Tensor) -> Tensor:
        codes = []
        for j, (classifier, table) in enumerate(zip(self.classifiers, self.tables, strict=True)):
            start = self.offset + (0 if self.shared_trunk else j * self.trunk_dim)
            logits = classifier(features[:, start:start + self.trunk_dim])  # (B, n_j)
            codes.append(logits.softmax(dim=1) @ table)  # (B, Df)
        return torch.cat(codes, dim=1)


def attach(backbone: nn.Module, feat_dim: int, heads: nn.Module, factor_codes: FactorCodes,
           trunk_dim: int, frozen: bool) -> StackedBackbone:
    """Make ``heads`` (an ``EncoderHeads`` on ``feat_dim`` features) read stage 1's classifiers for h_c;
    return the backbone that feeds them. ``frozen``: the copied classifiers and tables take no gradient."""
    factor_codes.requires_grad_(not frozen)
    heads.content_head = ClassifierContentHead(factor_codes, feat_dim, trunk_dim)
    heads.class_head, heads.residual_head = FirstColumns(heads.class_head, feat_dim), FirstColumns(heads.residual_head,
                                                                                                    feat_dim)
    return StackedBackbone(backbone, factor_codes.trunks)
