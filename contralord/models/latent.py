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

from contralord.models.encoders import build_backbone
from contralord.training import distributed


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

    Each labelled factor j owns a table E_j of one ``factor_dim`` code per value. A labelled image takes
    the row of its label; any other image takes softmax(C_j(x)) @ E_j, where C_j is a linear head on a
    small CNN: one CNN per factor (zerodim's ``arch_betavae``) or one CNN shared by the factors.

    Args:
        sizes: values of each labelled factor.
        factor_dim: code size per factor.
        trunks: one CNN per factor, or a single CNN shared by all; each maps (B, C, H, W) to (B, F).
        feat_dim: F.
        init: the tables' init range (low, high): zerodim's (-0.05, 0.05), or (0, 0.05) of its older code.
        rng: generator of the tables' init.
        soft_table_grad: whether an unlabelled image's soft code also trains E_j (zerodim: no, E_j is
            taken under no_grad there, so the tables learn only from the labelled images' own rows).
    """

    def __init__(self, sizes: tuple[int, ...], factor_dim: int, trunks: list[nn.Module], feat_dim: int,
                 init: tuple[float, float], rng: torch.Generator, soft_table_grad: bool = True):
        super().__init__()
        if len(trunks) not in (1, len(sizes)):
            raise ValueError(f"FactorCodes: expected 1 or {len(sizes)} trunks, got {len(trunks)}")
        low, high = init
        self.tables = nn.ParameterList(nn.Parameter(low + torch.rand(n, factor_dim, generator=rng) * (high - low))
                                       for n in sizes)
        self.trunks = nn.ModuleList(trunks)
        self.classifiers = nn.ModuleList(nn.Linear(feat_dim, n) for n in sizes)
        self.soft_table_grad = soft_table_grad

    def logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, C, H, W) -> one (B, n_j) logit tensor per labelled factor."""
        if len(self.trunks) == 1:
            features = self.trunks[0](x)  # (B, F)
            return [head(features) for head in self.classifiers]
        return [head(trunk(x)) for trunk, head in zip(self.trunks, self.classifiers, strict=True)]

    def forward(self, x: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, H, W), known (B, F_l) labels or -1 -> codes (B, F_l * factor_dim), logits."""
        logits, codes = self.logits(x), []
        for j, (table, logit) in enumerate(zip(self.tables, logits, strict=True)):
            soft = logit.softmax(dim=1) @ (table if self.soft_table_grad else table.detach())  # (B, Df)
            hard = table[known[:, j].clamp(min=0)]  # (B, Df) the label's code
            codes.append(torch.where(known[:, j:j + 1] >= 0, hard, soft))
        return torch.cat(codes, dim=1), logits


def build_factor_codes(lat, sizes: tuple[int, ...], channels: int, image_size: int,
                       rng: torch.Generator) -> FactorCodes:
    """Stage 1's ``FactorCodes`` for ``lat`` (a ``LatentConfig``): its trunks, table init and gradient rule.
    The trunks are LORD conv encoders of width ``latent.classifier_width``, drawn from the global RNG."""
    count = len(sizes) if lat.classifier_trunks == "per_factor" else 1
    built = [build_backbone("lord", channels, image_size, None, width=lat.classifier_width) for _ in range(count)]
    init = (-lat.init_scale, lat.init_scale) if lat.factor_init == "symmetric" else (0.0, lat.init_scale)
    return FactorCodes(sizes, lat.factor_dim, [m for m, _ in built], built[0][1], init, rng,
                       soft_table_grad=lat.soft_code_table_grad)
