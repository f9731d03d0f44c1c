"""Labelled factors: the paper's partial-labels protocol (ContraLORD Sec. 4.3, "with 100 labels").

The paper evaluates "following Gabbay & Hoshen (2020; 2021) ... with 100 labels", and its Table 2 rows
"Locatello et al." and "Gabbay et al." come from Gabbay, Cohen & Hoshen (NeurIPS 2021, avivga/zerodim).
There a subset of the ground-truth factors is *labelled for a few images*, and those labels supervise
training: each labelled factor gets its own code, and the disentanglement metrics score those codes
against the labelled factors only. This module decides which factors are labelled, which images carry
the labels, and the code sizes that follow.

Choices (each a config key):
- ``data.labelled_factors``: comma-separated names; "" takes zerodim's set for the dataset
  (``DEFAULT_LABELLED``). A generic factors file has no default and must name them.
- ``data.num_labels``: one seeded subset of that many training images carries labels for *every*
  labelled factor; training never reads another label (``LabelledFactors.known`` is -1 elsewhere).
- ``latent.structure``: ``factors`` gives each labelled factor a ``latent.factor_dim`` code and no
  class code d (in zerodim's defaults the class factor is never labelled, so a per-class code would
  use labels the protocol does not give); ``class`` is LORD's per-class d; ``auto`` is ``factors``
  under ``eval.protocol=partial-labels`` on a dataset with factors, else ``class``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData

# zerodim's labelled factors per dataset (its configs); the rest are residual factors, never labelled.
DEFAULT_LABELLED: dict[str, tuple[str, ...]] = {
    "shapes3d": ("floor_hue", "wall_hue", "object_hue"),
    "shapes3d_h5": ("floor_hue", "wall_hue", "object_hue"),
    "dsprites": ("scale", "posX", "posY"),
    "dsprites_npz": ("scale", "posX", "posY"),
    "cars3d": ("elevation", "azimuth"),
    "smallnorb": ("elevation", "azimuth", "lighting"),
}
LABEL_SEED_SALT = 7  # the labelled subset is drawn from default_rng([run.seed, LABEL_SEED_SALT])


@dataclass(frozen=True)
class LabelledFactors:
    """The labelled factors of a training set and the images that carry their labels.

    Attributes:
        names: labelled factor names, in ``data.labelled_factors`` order.
        columns: their columns in ``data.factors``.
        sizes: number of values of each (the rows of its code table).
        labelled: (M,) int64 sorted dataset positions whose labels training may use.
        known: (N, F_l) int64 factor values of the labelled images, -1 for every other image.
    """

    names: tuple[str, ...]
    columns: tuple[int, ...]
    sizes: tuple[int, ...]
    labelled: torch.Tensor
    known: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(N,) bool: the image carries labels."""
        return self.known[:, 0] >= 0


def structure(cfg: ContraLordConfig, data: ImageFactorData) -> str:
    """``factors`` or ``class``: the stage-1 code structure this config uses on this data."""
    if cfg.latent.structure != "auto":
        return cfg.latent.structure
    return "factors" if cfg.eval.protocol == "partial-labels" and data.factors is not None else "class"


def resolved(cfg: ContraLordConfig, data: ImageFactorData) -> ContraLordConfig:
    """``cfg`` with ``latent.structure=auto`` replaced by what it means on ``data``: what a run records
    in config.json, so that evaluating it later under the other protocol rebuilds the same model."""
    if cfg.latent.structure != "auto":
        return cfg
    return dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, structure=structure(cfg, data)))


def labelled_names(cfg: ContraLordConfig, data: ImageFactorData) -> tuple[str, ...]:
    """The labelled factor names, checked against the data; ConfigError names the key."""
    key = "data.labelled_factors"
    if data.factors is None:
        raise ConfigError(f"{key}: dataset {data.name!r} has no ground-truth factors "
                          "(use eval.protocol=all-factors and latent.structure=class)")
    text = cfg.data.labelled_factors
    names = tuple(n.strip() for n in text.split(",") if n.strip()) if text else DEFAULT_LABELLED.get(data.name, ())
    if not names:
        raise ConfigError(f"{key}: dataset {data.name!r} has no default labelled factors; name some of "
                          f"{', '.join(data.factor_names)}")
    unknown = [n for n in names if n not in data.factor_names]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"{key}: expected at least 2 distinct names among {', '.join(data.factor_names)} "
                          f"(DCI needs two factors), got {text or ','.join(names)!r}")
    return names


def resolve(cfg: ContraLordConfig, data: ImageFactorData, draw: bool = True) -> LabelledFactors:
    """Which factors are labelled and which ``data.num_labels`` images carry the labels. ``draw=False``: which factors
    only, no image carries labels (scoring a saved run reads no label of training; ``data.num_labels`` is not
    checked against this data)."""
    names = labelled_names(cfg, data)
    n, m = len(data), cfg.data.num_labels if draw else 0
    if m > n:
        raise ConfigError(f"data.num_labels: expected at most the {n} training images, got {m}")
    if draw and m < 2 and cfg.latent.best_reference_steps and structure(cfg, data) == "factors":
        raise ConfigError(f"latent.best_reference_steps: the best reference holds out a validation split of the "
                          f"labelled images, so it needs data.num_labels >= 2, got {m}; set it to 0")
    columns = tuple(data.factor_names.index(name) for name in names)
    labelled = np.sort(np.random.default_rng([cfg.run.seed, LABEL_SEED_SALT]).choice(n, m, replace=False))
    labelled = torch.from_numpy(labelled.astype(np.int64))
    known = torch.full((n, len(columns)), -1, dtype=torch.int64)
    known[labelled] = data.factors[labelled][:, list(columns)]
    sizes = tuple(int(data.factor_sizes[c]) for c in columns)
    return LabelledFactors(names=names, columns=columns, sizes=sizes, labelled=labelled, known=known)


@dataclass(frozen=True)
class CodeLayout:
    """What each column of the codes stands for, for one config on one dataset: the one answer that stage 1's
    tables, stage 2's heads and queues, the VAE baseline and the evaluation's names all ask for.

    Attributes:
        structure: ``factors`` or ``class``.
        class_dim, content_dim, residual_dim: Dd, Dc, Dr.
        factors: the labelled factors, in order; g^c is one block of ``factor_dim`` columns per factor
            (``factors`` structure; () under ``class``).
        factor_dim: columns per labelled factor (0 under ``class``).
    """

    structure: str
    class_dim: int
    content_dim: int
    residual_dim: int
    factors: tuple[str, ...] = ()
    factor_dim: int = 0

    @property
    def dims(self) -> tuple[int, int, int]:
        """(Dd, Dc, Dr)."""
        return self.class_dim, self.content_dim, self.residual_dim

    def columns(self, factor: str) -> slice:
        """The columns of g^c that code ``factor``."""
        start = self.factors.index(factor) * self.factor_dim
        return slice(start, start + self.factor_dim)

    @property
    def first_columns(self) -> list[int]:
        """The first column of each factor's block (the VAE baseline's supervised latent)."""
        return [self.columns(name).start for name in self.factors]

    @property
    def content_names(self) -> list[str]:
        """A name per column of g^c (and h_c): the labelled factor it codes (``name`` when ``factor_dim`` is 1,
        else ``name.i``), or ``c<i>`` under LORD's class structure."""
        if self.structure != "factors":
            return [f"c{i}" for i in range(self.content_dim)]
        k = self.factor_dim
        return [name if k == 1 else f"{name}.{i}" for name in self.factors for i in range(k)]


def layout(cfg: ContraLordConfig, data: ImageFactorData) -> CodeLayout:
    """The code layout of ``cfg`` on ``data``. ``factors``: no class code, g^c = one ``latent.factor_dim`` block per
    labelled factor, g^r as configured; ``class``: LORD's class, content and residual codes."""
    lat = cfg.latent
    if structure(cfg, data) == "factors":
        names = labelled_names(cfg, data)
        return CodeLayout("factors", 0, len(names) * lat.factor_dim, lat.residual_dim, names, lat.factor_dim)
    return CodeLayout("class", lat.class_dim, lat.content_dim, lat.residual_dim)
