"""ContraLORD: representation disentanglement with latent optimisation and contrastive learning.

Reference implementation in plain PyTorch (no Ray, no MLflow). ``train(cfg, out_dir)`` runs stage 1
(embedding optimisation, Eq. 1) and stage 2 (encoder pre-training, Eq. 2-6).
"""

from contralord.config import ConfigError, ContraLordConfig
from contralord.presets import PRESETS, resolve_presets

__all__ = ["ConfigError", "ContraLordConfig", "PRESETS", "resolve_presets", "train"]


def train(*args, **kwargs):
    """See ``contralord.run.trainer.train`` (imported lazily to keep ``import contralord`` light)."""
    from contralord.run.trainer import train as _train

    return _train(*args, **kwargs)
