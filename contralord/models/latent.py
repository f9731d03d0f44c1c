"""Stage 1 of ContraLORD: embedding optimisation (Sec. 3.2, Eq. 1), after LORD.

Every training image i owns a content code g^c_i and a residual code g^r_i (rows of two tables);
every class owns a class code d (the labels are given, so d_i = d_{class(i)}). The generator G sees
d through AdaIN and [g^c_i + z, g^r_i + z] as its input, with z ~ N(0, sigma^2 I) in training only.
The paper writes one z for both halves; we read it as one Gaussian vector over the concatenated
generative code g = [g^c, g^r] (independent per coordinate), which is what "noise on g" means in LORD.

Distribution: the per-image tables are kept out of DDP. A dense all-reduce of a Shapes3D-sized table
(480k x 128 floats, ~250 MB) every step would dwarf the generator's gradients, and it would be all
zeros except the batch rows. Instead every rank updates only the rows of its own batch slice and
``ImageCodes.merge_across_ranks`` sums the rows each rank touched once, at the end (see trainer).
"""

from __future__ import annotations

import torch
from torch import nn

from contralord import distributed


class ImageCodes(nn.Module):
    """Per-image generative codes: ``content`` (N, Dc) and ``residual`` (N, Dr), uniform in +-init."""

    def __init__(self, num_images: int, content_dim: int, residual_dim: int, init_scale: float,
                 generator: torch.Generator):
        super().__init__()
        self.content = nn.Parameter((torch.rand(num_images, content_dim, generator=generator) * 2 - 1) * init_scale)
        self.residual = nn.Parameter((torch.rand(num_images, residual_dim, generator=generator) * 2 - 1) * init_scale)
        self.register_buffer("touched", torch.zeros(num_images, dtype=torch.bool))  # rows this rank trained

    def forward(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """index (B,) -> content (B, Dc), residual (B, Dr)."""
        if self.training:
            self.touched[index] = True
        return self.content[index], self.residual[index]

    @torch.no_grad()
    def merge_across_ranks(self, extra: list[torch.Tensor] = ()) -> None:
        """Make every rank hold every rank's trained rows (one all-reduce per table).

        Stage 1's sampler gives each image to one owner rank, so each row (and its optimiser
        moments, passed in ``extra`` as (N, D) tensors) is trained on one rank only: summing the
        touched rows over ranks is exact. Called before each checkpoint and at the end of stage 1.
        """
        if distributed.world_size() == 1:
            return
        mask = self.touched.to(self.content.dtype).unsqueeze(1)  # (N, 1)
        count = distributed.all_reduce_sum(mask.clone())  # (N, 1) ranks that trained each row
        for table in [self.content.data, self.residual.data, *extra]:
            summed = distributed.all_reduce_sum(table * mask)  # (N, D) every rank's own rows
            table.copy_(torch.where(count > 0.5, summed / count.clamp(min=1), table))


class LatentDecoder(nn.Module):
    """Class-code table plus generator: the part of stage 1 that every rank shares (DDP-wrapped)."""

    def __init__(self, num_classes: int, class_dim: int, init_scale: float, generator_module: nn.Module,
                 rng: torch.Generator):
        super().__init__()
        self.class_codes = nn.Parameter((torch.rand(num_classes, class_dim, generator=rng) * 2 - 1) * init_scale)
        self.generator = generator_module

    def forward(self, class_id: torch.Tensor, content: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """class_id (B,), content (B, Dc), residual (B, Dr) -> image (B, C, H, W) in [0, 1]."""
        return self.generator(self.class_codes[class_id], content, residual)


class FactorCodes(nn.Module):
    """Labelled-factor codes of stage 1 (``latent.structure=factors``; after zerodim).

    Each labelled factor j owns a table E_j of one ``factor_dim`` code per value (uniform in
    [0, init_scale), zerodim's init). A labelled image takes the row of its label; any other image
    takes softmax(C_j(x)) @ E_j, where C_j is a linear head on one small CNN shared by the factors
    (zerodim trains one CNN per factor; sharing the trunk is our saving on 2 CPU cores).

    Args:
        sizes: values of each labelled factor.
        factor_dim: code size per factor.
        trunk: CNN mapping images (B, C, H, W) to features (B, F).
        feat_dim: F.
        init_scale: table init range.
        rng: generator of the tables' init.
    """

    def __init__(self, sizes: tuple[int, ...], factor_dim: int, trunk: nn.Module, feat_dim: int,
                 init_scale: float, rng: torch.Generator):
        super().__init__()
        self.tables = nn.ParameterList(nn.Parameter(torch.rand(n, factor_dim, generator=rng) * init_scale)
                                       for n in sizes)
        self.trunk = trunk
        self.classifiers = nn.ModuleList(nn.Linear(feat_dim, n) for n in sizes)

    def logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, C, H, W) -> one (B, n_j) logit tensor per labelled factor."""
        features = self.trunk(x)  # (B, F)
        return [head(features) for head in self.classifiers]

    def forward(self, x: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, H, W), known (B, F_l) labels or -1 -> codes (B, F_l * factor_dim), logits."""
        logits, codes = self.logits(x), []
        for j, (table, logit) in enumerate(zip(self.tables, logits, strict=True)):
            soft = logit.softmax(dim=1) @ table  # (B, Df) expected code under the classifier
            hard = table[known[:, j].clamp(min=0)]  # (B, Df) the label's code
            codes.append(torch.where(known[:, j:j + 1] >= 0, hard, soft))
        return torch.cat(codes, dim=1), logits
