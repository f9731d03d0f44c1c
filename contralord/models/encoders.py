"""Stage-2 encoder backbones f (paper Sec. 3.3, Eqs. 2-5).

One backbone f maps an image to a feature vector; the heads h_d, h_c, h_r (``heads.py``) sit on top.
Backbones:

- ``"lord"``: LORD's convolutional encoder without its last linear layer (no BatchNorm, so MoCo's
  shuffle-BN is unnecessary). Feature dim 256.
- ``"resnet18"`` / ``"resnet50"``: torchvision ResNets (paper: ResNet-50) with ``fc = Identity``.
  Feature dim 512 / 2048. For small images (image_size <= 64) the stem is the CIFAR variant used by
  MoCo's CIFAR demo and solo-learn's CIFAR recipes: conv1 is 3x3 stride 1 and there is no max-pool,
  so a 32x32 image still reaches layer4 at 4x4 instead of 1x1.

Pretrained weights are never downloaded; they come only from a user-supplied file
(``encoder.pretrained_path``).
"""

from __future__ import annotations

import itertools
import os
import warnings

import torch
from torch import Tensor, nn
from torchvision.models import resnet18, resnet50

from contralord.models.generator import NEGATIVE_SLOPE

BACKBONES = ("lord", "resnet18", "resnet50")
SMALL_IMAGE_MAX = 64  # image_size <= this uses the CIFAR-style ResNet stem
_RESNET_FEAT_DIMS = {"resnet18": 512, "resnet50": 2048}
_LORD_FEAT_DIM = 256
_LORD_DOWNSAMPLINGS = 4  # four stride-2 convs: the image side must be divisible by 16


class LordEncoder(nn.Module):
    """LORD's conv encoder (no BatchNorm), up to its 256-d penultimate layer.

    Conv(C -> w, 7x7, pad 3) + LReLU, then stride-2 4x4 convs w -> 2w -> 4w -> 4w -> 4w (pad 1), each
    + LReLU, flatten, FC -> 256 + LReLU, FC 256 + LReLU. With w = 64 this is LORD's 64-128-256-256-256.

    Args:
        in_channels: image channels C.
        image_size: image side; must be divisible by 16 (the flatten size is (4w) * (image_size/16)^2).
        width: w, channels of the first conv.
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 7, padding=3), nn.LeakyReLU(NEGATIVE_SLOPE)]
        for n_in, n_out in itertools.pairwise(chans):
            layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.convs = nn.Sequential(*layers)
        side = image_size // 2**_LORD_DOWNSAMPLINGS
        self.fc = nn.Sequential(
            nn.Linear(chans[-1] * side * side, _LORD_FEAT_DIM), nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(_LORD_FEAT_DIM, _LORD_FEAT_DIM), nn.LeakyReLU(NEGATIVE_SLOPE),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map images (B, C, H, W) to features (B, 256)."""
        x = self.convs(x)  # (B, 4w, H/16, W/16)
        x = x.flatten(1)  # (B, 4w * H/16 * W/16)
        return self.fc(x)  # (B, 256)


def _build_resnet(name: str, in_channels: int, image_size: int) -> nn.Module:
    """A torchvision ResNet with a stem adapted to ``in_channels`` / small images and ``fc = Identity``."""
    net = {"resnet18": resnet18, "resnet50": resnet50}[name](weights=None)
    if image_size <= SMALL_IMAGE_MAX:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # torchvision's init for convs (a replaced stem would otherwise get PyTorch's default init)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    return net


def _read_state_dict(path: str) -> dict[str, Tensor]:
    """Read a torchvision-style state dict, unwrapping ``{"state_dict": ...}`` and ``module.`` prefixes."""
    if not os.path.isfile(path):
        raise ValueError(f"encoder.pretrained_path={path!r} does not exist or is not a file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"encoder.pretrained_path={path!r} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(module: nn.Module, path: str, first_conv: str = "conv1.weight") -> None:
    """Load backbone weights from a user-supplied file, in place.

    ``fc.*`` keys are ignored (our ``fc`` is an Identity). If ``first_conv`` has another shape than in
    the file (other channel count, or the small-image 3x3 stem vs. ImageNet's 7x7), it keeps its random
    initialisation and a warning says so.

    Args:
        module: the backbone to fill.
        path: ``encoder.pretrained_path``.
        first_conv: state-dict key of the stem conv weight.

    Raises:
        ValueError: if the file is missing, no key matches, another tensor's shape mismatches, or a
            backbone tensor is absent from the file.
    """
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own}
    if not matched:
        raise ValueError(f"encoder.pretrained_path={path!r}: no key matches the backbone "
                         f"(file keys start with {sorted(state)[:3]}, backbone keys with {sorted(own)[:3]})")
    if first_conv in matched and matched[first_conv].shape != own[first_conv].shape:
        warnings.warn(f"encoder.pretrained_path: {first_conv} has shape {tuple(matched[first_conv].shape)} in the "
                      f"file but {tuple(own[first_conv].shape)} in the backbone; keeping it random", stacklevel=2)
        del matched[first_conv]
    bad = [k for k, v in matched.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"encoder.pretrained_path={path!r}: shape mismatch for {bad[:5]} (wrong architecture?)")
    missing = [k for k in own if k not in matched and k != first_conv]
    if missing:
        raise ValueError(
            f"encoder.pretrained_path={path!r}: {len(missing)} backbone tensors missing, e.g. {missing[:5]}"
        )
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        warnings.warn(f"encoder.pretrained_path: ignoring {len(unexpected)} unknown keys, e.g. {unexpected[:5]}",
                      stacklevel=2)
    module.load_state_dict(matched, strict=False)


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    pretrained_path: str | None = None,
    width: int = 64,
) -> tuple[nn.Module, int]:
    """Build the encoder backbone f.

    Args:
        name: one of ``BACKBONES`` (``encoder.backbone``).
        in_channels: image channels C.
        image_size: image side H = W (``data.image_size``).
        pretrained_path: optional torchvision-style state dict to load (``encoder.pretrained_path``).
        width: first-conv channels of the ``"lord"`` encoder (ignored by ResNets).

    Returns:
        ``(module, feat_dim)``; the module maps float images (B, C, H, W) to features (B, feat_dim).

    Raises:
        ValueError: for an unknown name, an image size the LORD encoder cannot flatten, or a bad
            pretrained file (see ``load_pretrained``).
    """
    if name not in BACKBONES:
        raise ValueError(f"encoder.backbone={name!r} is unknown; choose one of {BACKBONES}")
    if name == "lord":
        if image_size % 2**_LORD_DOWNSAMPLINGS or image_size <= 0:
            raise ValueError(f"data.image_size={image_size}: the lord encoder needs a positive multiple of 16")
        module, feat_dim, first_conv = LordEncoder(in_channels, image_size, width), _LORD_FEAT_DIM, "convs.0.weight"
    else:
        module, feat_dim = _build_resnet(name, in_channels, image_size), _RESNET_FEAT_DIMS[name]
        first_conv = "conv1.weight"
    if pretrained_path is not None:
        load_pretrained(module, pretrained_path, first_conv)
    return module, feat_dim
