"""What both stage-1 trainers share (``latent_stage._LatentTrainer`` for LORD's class codes and
``latent_factors.FactorTrainer`` for labelled factors): the DDP merge of per-image code rows, and the
checkpoint save and exact resume.

A subclass sets ``cfg``, ``data``, ``device``, ``state`` (an nn.Module whose ``codes`` is an
``ImageCodes``), ``optimizer`` and ``scheduler``, and names its per-image tables in ``code_tables``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from contralord.training import checkpoint, distributed

RESUME_KEYS = ("state", "optimizer", "scheduler", "step", "rng")


class CodeTableTrainer:
    """merge / save / resume of a stage-1 trainer with per-image code tables."""

    def code_tables(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def merge(self) -> None:
        """Under DDP, give every rank every rank's code rows and their Adam moments."""
        moments = [self.optimizer.state[t][k] for t in self.code_tables()
                   for k in ("exp_avg", "exp_avg_sq") if t in self.optimizer.state]
        self.state.codes.merge_across_ranks(moments)

    history: tuple | list = ()  # the epochs' metrics a resumed checkpoint holds (``resume``)

    def save(self, path: Path, step: int, history: list[dict[str, float]] = ()) -> str:
        """The trainer's state at ``step``, with ``history``, the metrics of the epochs run so far."""
        self.merge()
        checkpoint.save_atomic({
            "state": self.state.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "step": step, "rng": checkpoint.rng_state(),
            "config": self.cfg.to_flat_dict(), "history": list(history),
        }, path)
        return str(path)

    def resume(self, path: Path) -> int:
        """Load ``path`` if it exists; return the global step to continue from (0 when fresh)."""
        if not path.is_file():
            return 0
        saved = checkpoint.load(path, required=RESUME_KEYS)
        self.state.load_state_dict(saved["state"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        self.history = list(saved.get("history", []))  # a checkpoint written before history was kept: none
        # touched marks rows this rank trained; after a load only its own rows are its own again
        owned = torch.arange(len(self.data), device=self.device) % distributed.world_size() == distributed.rank()
        self.state.codes.touched.copy_(self.state.codes.touched & owned)
        return int(saved["step"])
