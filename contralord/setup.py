"""One run's inputs, resolved once: the config, the data, and what the config means on that data.

``Setup.of(cfg, data)`` is the one place that asks ``contralord.labels`` which code structure a config uses on a
dataset, which factors are labelled and which images carry the labels, and what each column of the codes stands
for. ``preflight.prepare`` builds it after every check on the user's input; stage 1, stage 2, the evaluation and
the sweep's trial code read its fields instead of working the answers out again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from contralord import labels
from contralord.config import ContraLordConfig, parse_factor_filter
from contralord.data import ImageFactorData, build_dataset
from contralord.labels import CodeLayout, LabelledFactors


def needs_latent(cfg: ContraLordConfig) -> bool:
    """Stage 1 is needed when stage 2 reconstructs through G or regresses the stage-1 codes."""
    if cfg.encoder.model == "vae":  # Locatello et al.'s baseline trains its own decoder
        return False
    contrastive_on_codes = (cfg.loss.con > 0 or cfg.loss.res > 0) and cfg.encoder.anchor == "stage1"
    return cfg.loss.rec > 0 or cfg.loss.sup > 0 or contrastive_on_codes


def build_data(cfg: ContraLordConfig) -> ImageFactorData:
    """The training set ``cfg.data`` names (a ``DataError`` names the file or key that does not load)."""
    d = cfg.data
    return build_dataset(d.name, d.path or None, d.image_size, d.size, cfg.run.seed,
                         class_factor=d.class_factor or None,
                         factor_filter=parse_factor_filter(d.factor_filter) or None, split=d.split,
                         max_array_bytes=int(d.max_array_gib * 2**30))


def resolved_config(cfg: ContraLordConfig, data: ImageFactorData) -> ContraLordConfig:
    """``cfg`` with ``latent.structure=auto`` replaced by what it means on ``data`` (what config.json records, what the
    stage-1 cache key hashes); no other check."""
    return labels.resolved(cfg, data)


@dataclass(frozen=True, eq=False)  # identity: its tensors have no one truth value
class Setup:
    """A run's resolved inputs.

    Attributes:
        cfg: the config with ``latent.structure=auto`` replaced by what it means on ``data`` (what config.json
            records and every stage reads).
        data: the training set.
        layout: what each column of the codes stands for (``labels.CodeLayout``).
        labelled: the labelled factors and the images that carry their labels, where the run has them (the
            ``factors`` structure, or a partial-labels evaluation of data with factors); else None.
    """

    cfg: ContraLordConfig
    data: ImageFactorData
    layout: CodeLayout
    labelled: LabelledFactors | None

    @classmethod
    def of(cls, cfg: ContraLordConfig, data: ImageFactorData, draw_labels: bool = True) -> Setup:
        """Resolve ``cfg`` on ``data`` (a ``ConfigError`` names the key that does not fit the data).
        ``draw_labels=False`` (scoring a saved run): the labelled factors without the images that carry labels,
        ``data.num_labels`` unchecked."""
        resolved = resolved_config(cfg, data)
        scores_labels = (resolved.latent.structure == "factors"
                         or (cfg.eval.protocol == "partial-labels" and data.factors is not None))
        labelled = labels.resolve(resolved, data, draw=draw_labels) if scores_labels else None
        return cls(resolved, data, labels.layout(resolved, data), labelled)

    def with_eval(self, **changes) -> Setup:
        """This setup with ``eval.<field>`` changed (sizes, floors): the protocol stays, and with it everything
        ``Setup.of`` resolved."""
        if "protocol" in changes:
            raise ValueError("Setup.with_eval: eval.protocol decides the labelled factors; build another Setup.of")
        cfg = self.cfg
        return dataclasses.replace(self, cfg=dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **changes)))

    @property
    def structure(self) -> str:
        """``factors`` or ``class``: stage 1's code structure."""
        return self.layout.structure

    @property
    def labelled_names(self) -> tuple[str, ...]:
        """The labelled factors' names (() where the run has none)."""
        return self.labelled.names if self.labelled is not None else ()
