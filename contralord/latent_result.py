"""What stage 1 hands stage 2: the stage-1 artifact (``latent.pt``), its cache key, the factor model rebuilt
from it.

Stage 1 (``latent_stage.train_latent``) writes the artifact under ``<cache>/<key>/``; stage 2, the evaluation and the
sweep read it through ``LatentResult``, so neither stage imports the other.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from contralord.config import ConfigError
from contralord.models.latent import FactorCodes, build_factor_codes
from contralord.setup import Setup
from contralord.training import checkpoint
from contralord.training.loop import final_names

ARTIFACT = "latent.pt"
ARTIFACT_KEYS = ("key", "content", "residual", "class_codes", "generator", "metrics")


@dataclass
class LatentResult:
    """The stage-1 output that stage 2 needs."""

    key: str  # cache key (config hash + data fingerprint)
    path: Path  # the artifact file
    content: torch.Tensor  # (N, Dc) learned g^c per training image
    residual: torch.Tensor  # (N, Dr) learned g^r
    class_codes: torch.Tensor  # (num_classes, Dd) learned d per class
    generator_state: dict[str, torch.Tensor]
    metrics: dict[str, float]  # the last epoch's training metrics
    reused: bool  # True when loaded from the cache instead of trained
    factor_codes: dict[str, torch.Tensor] | None = None  # factors: the classifiers' and tables' state dict

    def classifiers(self, key: str) -> dict[str, torch.Tensor]:
        """``factor_codes``, or a ConfigError naming ``key`` (the setting that needs them) when this artifact
        was trained before stage 1's classifiers were kept."""
        if self.factor_codes is None:
            raise ConfigError(f"{key}: needs a stage-1 artifact with its classifiers; {self.path} has none (it was "
                              "trained before they were kept: retrain stage 1)")
        return self.factor_codes

    def final_metrics(self) -> dict[str, float]:
        """What stage 1 ended with, as ``latent/final/...``: its last epoch's training metrics and, for labelled
        factors, what it learnt from its labels (``FactorTrainer.diagnostics``). A trial's summary carries them,
        and the stage-1 MLflow run logs them at step 0, its final-evaluation step (``tune/trial/stage1.py``)."""
        return final_names(self.metrics)

    def factor_model(self, setup: Setup, key: str, device: torch.device) -> FactorCodes:
        """Stage 1's factor model (classifiers + tables) rebuilt from ``factor_codes``, for the setting ``key``."""
        return load_factor_codes(setup, self.classifiers(key), device)

    @torch.no_grad()
    def combinations(self, setup: Setup, key: str, device: torch.device) -> torch.Tensor:
        """(N,) int64: each training image's combination of labelled-factor values as stage 1 knows it, one id per
        combination: an image's own labels where it carries them, else the value its stage-1 classifier C_j ranks
        first (``encoder.label_aware_negatives``: a queued key of the same combination is no negative)."""
        found, data = setup.labelled, setup.data
        model = self.factor_model(setup, key, device)
        values = []
        for chunk in torch.arange(len(data)).split(256):
            x = data.images[chunk].to(device).float().div_(255)  # (B, C, H, W)
            values.append(torch.stack([logit.argmax(dim=1) for logit in model.logits(x)], dim=1).cpu())  # (B, F_l)
        values = torch.where(found.known >= 0, found.known, torch.cat(values))  # (N, F_l)
        radix = torch.tensor([math.prod(found.sizes[j + 1:]) for j in range(len(found.sizes))], dtype=torch.long)
        return (values * radix).sum(dim=1)


def latent_key(setup: Setup) -> str:
    """Hash of everything stage 1 depends on: data + latent sections (``latent.structure`` resolved), the seed and
    the data content."""
    cfg = setup.cfg
    text = f"{cfg.section_hash('data', 'latent')}/{cfg.run.seed}/{setup.data.fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_latent(path: str | Path, reused: bool = True) -> LatentResult:
    """Read a stage-1 artifact written by ``train_latent``."""
    try:
        saved = checkpoint.load(path, required=ARTIFACT_KEYS)
    except checkpoint.CheckpointError as error:
        raise checkpoint.CheckpointError(f"stage-1 artifact: {error}; remove {Path(path).parent} to retrain "
                                         "stage 1 for this config") from None
    return LatentResult(key=saved["key"], path=Path(path), content=saved["content"], residual=saved["residual"],
                        class_codes=saved["class_codes"], generator_state=saved["generator"],
                        metrics=saved["metrics"], reused=reused, factor_codes=saved.get("factor_codes"))


def load_factor_codes(setup: Setup, state: dict[str, torch.Tensor], device: torch.device) -> FactorCodes:
    """Stage 1's factor model (classifiers + tables) rebuilt from an artifact's ``factor_codes`` state dict."""
    cfg = setup.cfg
    model = build_factor_codes(cfg.latent, setup.labelled.sizes, setup.data.channels, cfg.data.image_size,
                               torch.Generator().manual_seed(0))
    model.load_state_dict(state)
    return model.to(device).eval()


def scored_factor_model(setup: Setup, latent: LatentResult | None, device: torch.device) -> FactorCodes | None:
    """Stage 1's classifiers and tables when ``eval.scored_code=classifier`` scores them, else None."""
    if setup.cfg.eval.scored_code != "classifier":
        return None
    if latent is None:
        raise ConfigError("eval.scored_code: classifier needs this run's stage 1 (its labelled-factor classifiers)")
    return latent.factor_model(setup, "eval.scored_code", device)


def untrained_result(setup: Setup, stage1) -> LatentResult:
    """A stage-1 result of the right shapes from an untrained stage-1 trainer (either structure): what the benchmark
    and the sweep's cost model time stage 2 with, without training stage 1."""
    cfg, data = setup.cfg, setup.data
    state, (_, content_dim, _) = stage1.state, setup.layout.dims
    content = state.codes.content.detach()
    if content.shape[1] != content_dim:  # the labelled-factor codes come from tables, not a per-image table
        content = torch.rand(len(data), content_dim, generator=torch.Generator().manual_seed(0)) * cfg.latent.init_scale
    class_codes = getattr(state.decoder, "class_codes", torch.zeros(data.num_classes, 0)).detach()
    factor_codes = getattr(state.decoder, "factor_codes", None)  # the classifiers that encoder.content_head copies
    return LatentResult("bench", None, content.cpu(), state.codes.residual.detach().cpu(), class_codes.cpu(),
                        state.decoder.generator.state_dict(), {}, False,
                        factor_codes=factor_codes.state_dict() if factor_codes is not None else None)
