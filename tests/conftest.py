import pytest
import torch

from contralord.config import ContraLordConfig

# The tiniest honest configuration: 32x32 procedural shapes, 2-3 steps per stage.
TINY = {
    "data.name": "shapes3d", "data.image_size": 32, "data.size": 96, "data.num_labels": 24,
    "latent.class_dim": 8, "latent.content_dim": 4, "latent.residual_dim": 4, "latent.generator_width": 16,
    "latent.epochs": 1, "latent.batch_size": 32,
    "encoder.backbone_width": 8, "encoder.epochs": 1, "encoder.batch_size": 32, "encoder.queue_size": 40,
    "run.eval_size": 64, "run.threads": 1, "eval.num_train": 64, "eval.num_test": 32, "eval.grid_size": 3,
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tiny_overrides():
    return dict(TINY)


@pytest.fixture
def tiny_cfg():
    return ContraLordConfig.from_overrides(TINY)
