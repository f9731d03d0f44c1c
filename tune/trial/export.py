"""The trained modules as MLflow logs them: plain-tensor views, one tensor in and one out.

MLflow 3's PyTorch flavour saves with ``torch.export`` ("pt2": a traced graph plus weights, no pickled
classes). Load one with ``load_logged_model`` (``contralord.cli.model_folder``), which checks the folder is that
layout and that the archive holds no pickle before torch reads it: ``mlflow.pytorch.load_model`` would run
a pickle-format folder, a ``code/`` module, or a pickle swapped into the archive. Export needs one input
tensor and one output tensor, hence:

- ``CodeEncoder``: images x (B, C, H, W) in [0, 1] -> codes (B, Dd + Dc + Dr) = [h_d, h_c, h_r] of f(x);
- ``CodeGenerator``: codes (B, Dd + Dc + Dr) -> images (B, C, H, W), the stage-1 G(d, g^c, g^r).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from contralord.data import ImageFactorData
from contralord.models.contralord import OnlineEncoder
from contralord.setup import Setup
from contralord.stage2.encoder_stage import build_online
from contralord.training import checkpoint


class CodeEncoder(nn.Module):
    def __init__(self, online: OnlineEncoder):
        super().__init__()
        self.backbone, self.heads = online.backbone, online.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> (B, Dd + Dc + Dr)."""
        return torch.cat(self.heads(self.backbone(x)), dim=1)


class CodeGenerator(nn.Module):
    def __init__(self, generator: nn.Module, dims: tuple[int, int, int]):
        super().__init__()
        self.generator, self.dims = generator, list(dims)  # (Dd, Dc, Dr)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, Dd + Dc + Dr) -> images (B, C, H, W)."""
        d, gc, gr = codes.split(self.dims, dim=1)  # (B, Dd), (B, Dc), (B, Dr)
        return self.generator(d, gc, gr)


def load_online(setup: Setup, path: str | Path) -> OnlineEncoder:
    """The online encoder (and generator, when L_rec is on) of a stage-2 checkpoint, on the CPU, in eval mode.

    Building seeds the global RNG (``build_online``); ``fork_rng`` puts it back, so calling this between
    epochs changes nothing in training."""
    with torch.random.fork_rng(devices=[]):
        online = build_online(setup, None)
    online.load_state_dict(checkpoint.load(path, required=("online",))["online"])
    return online.eval()


def example_images(data: ImageFactorData, n: int = 2) -> torch.Tensor:
    """The first ``n`` images as the encoder takes them: float (n, C, H, W) in [0, 1]."""
    return data.images[torch.arange(min(n, len(data)))].float().div(255)


def load_logged_model(tracking_uri: str, model_uri: str) -> nn.Module:
    """A logged model (``models:/<id>`` or ``models:/<name>/<version>``) through ``contralord.cli.model_folder``:
    its files are downloaded (nothing runs), the folder must be our pt2 layout, and only the graph loads.
    Use this instead of ``mlflow.pytorch.load_model``, which runs pickles and ``code/`` from the folder."""
    import tempfile

    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # models:/ resolves through it

    from contralord.cli.model_folder import load_model_folder

    with tempfile.TemporaryDirectory(prefix="contralord-model-") as folder, _use_tracking_uri(tracking_uri):
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        return load_model_folder(local)
