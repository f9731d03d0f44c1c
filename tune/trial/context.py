"""What every trial of one sweep shares, passed to the trials by closure (not as Tune params, so that
the MLflow params stay the trial's own config and nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SweepContext:
    kind: str  # negatives | batch_size | losses | temperature | optuna
    base: dict[str, Any]  # flat overrides common to all trials (preset + --set)
    variants: dict[str, dict[str, Any]]  # variant name -> its overrides (the swept knob)
    storage: str  # absolute path or URI: Tune/Train state, checkpoints
    latent_cache: str  # shared folder of stage-1 artifacts
    work_dir: str  # node-local folder for a trial's working files
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    stage1_runs: dict[str, str] = field(default_factory=dict)  # "seed" -> stage-1 MLflow run id
    workers: int = 1  # Train workers per trial; 1 runs the trainer in the Tune trial itself
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 2  # retries of a trial after a lost worker
    git_commit: str = ""
    run_tags: dict[str, str] = field(default_factory=dict)  # on every run of the sweep: MLflow's source/git tags
    extensions: dict[str, str] = field(default_factory=dict)  # "variant/seed" -> the ladder run a trial extends

    def extension_of(self, config: dict[str, Any]) -> str:
        """The run id of the finished ladder this trial extends (tune/trial/reuse.py), "" when it starts from
        scratch."""
        return self.extensions.get(f"{config.get('variant', '')}/{config.get('run.seed', 0)}", "")

    def trial_overrides(self, config: dict[str, Any]) -> dict[str, Any]:
        """The trial's flat config overrides: the sweep's base, the variant's, then sampled keys."""
        sampled = {k: v for k, v in config.items() if "." in k}
        variant = self.variants.get(config.get("variant", ""), {})
        return self.base | variant | sampled | {"run.latent_cache": self.latent_cache}
