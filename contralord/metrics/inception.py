"""Inception-v3 pool3 features for FID (Sec. 4.2, Table 3), from a user-supplied weights file.

Nothing is downloaded. The network is torchvision's ``inception_v3(weights=None, aux_logits=True,
init_weights=False)`` and its weights come from ``weights_path``. Two state dicts are accepted:

- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID graph ported to PyTorch; 1008-way
  ``fc``, no ``AuxLogits``). This is the FID standard. When it is detected (``fc.weight`` has 1008
  rows) the pooling blocks are patched as pytorch-fid does: TF's average pools ignore the zero padding
  (``count_include_pad=False``) in Mixed_5b-5d, 6b-6e and 7b, and Mixed_7c max-pools. Only with
  these weights and patches are numbers comparable with published FIDs.
- torchvision's ImageNet ``inception_v3_google-0cc3c7bd.pth``. The numbers are NOT comparable with
  published FIDs (different weights and pooling); fine for relative comparisons within one table.

Every tensor shared by the file and the network must match in shape; ``fc.*`` and ``AuxLogits.*`` are
ignored (pool3 comes before them). Preprocessing follows pytorch-fid: images in [0, 1], grayscale tiled
to 3 channels, bilinear resize to 299x299 (``align_corners=False``), then ``2x - 1``. That equals
ImageNet normalisation followed by torchvision's ``transform_input``, which is what the torchvision
weights expect too, so one pipeline serves both files.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception

_SKIPPED_PREFIXES = ("fc.", "AuxLogits.")
_FID_NUM_CLASSES = 1008  # pt_inception's fc (TF's 1001 classes padded to 1008)


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _tf_max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _fid_block(base: type[nn.Module], pool, name: str) -> type[nn.Module]:
    """A torchvision Inception block whose pool branch uses ``pool`` (TF's semantics).

    The parent's ``_forward`` returns ``[..., branch_pool]``; only the last branch is recomputed
    (one extra 1x1 conv), which keeps the parent's parameter names and every other branch.
    """

    def _forward(self, x):
        outputs = base._forward(self, x)
        outputs[-1] = self.branch_pool(pool(x))
        return outputs

    return type(name, (base,), {"_forward": _forward})


_FIDInceptionA = _fid_block(tv_inception.InceptionA, _tf_avg_pool, "_FIDInceptionA")
_FIDInceptionC = _fid_block(tv_inception.InceptionC, _tf_avg_pool, "_FIDInceptionC")
_FIDInceptionE1 = _fid_block(tv_inception.InceptionE, _tf_avg_pool, "_FIDInceptionE1")
_FIDInceptionE2 = _fid_block(tv_inception.InceptionE, _tf_max_pool, "_FIDInceptionE2")


def _patch_fid_blocks(net: tv_inception.Inception3) -> None:
    """Replaces the pooling blocks in place by their FID variants (parameters are loaded afterwards)."""
    net.Mixed_5b, net.Mixed_5c = _FIDInceptionA(192, pool_features=32), _FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        setattr(net, name, _FIDInceptionC(768, channels_7x7=c7))
    net.Mixed_7b, net.Mixed_7c = _FIDInceptionE1(1280), _FIDInceptionE2(2048)


def _load_matching(net: nn.Module, state_dict: dict) -> None:
    """Loads every non-head tensor; raises naming ``weights_path`` on a missing or misshapen one."""
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(_SKIPPED_PREFIXES)}
    given = {k: v for k, v in state_dict.items() if not k.startswith(_SKIPPED_PREFIXES)}
    missing = sorted(set(own) - set(given))
    wrong = sorted(k for k in own.keys() & given.keys() if tuple(given[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise ValueError(
            "weights_path must hold an Inception-v3 state dict (pytorch-fid pt_inception or torchvision); "
            f"found {len(missing)} missing tensors (e.g. {missing[:3]}) and {len(wrong)} of wrong shape "
            f"(e.g. {wrong[:3]})"
        )
    net.load_state_dict(given, strict=False)


class InceptionFeatures:
    """Callable pool3 (2048-d) feature extractor: ``(N, C, H, W)`` images in [0, 1] -> ``(N, 2048)``.

    Args:
        weights_path: path of an Inception-v3 state dict, or the state dict itself (a mapping).
        device: where the network runs.

    Attributes:
        fid_standard: True when the file is pytorch-fid's FID weights (patched blocks in use).
    """

    def __init__(self, weights_path, device="cpu"):
        state_dict = self._read(weights_path)
        fc = state_dict.get("fc.weight")
        self.fid_standard = fc is not None and fc.shape[0] == _FID_NUM_CLASSES
        net = tv_inception.inception_v3(weights=None, aux_logits=True, init_weights=False)
        if self.fid_standard:
            _patch_fid_blocks(net)
        _load_matching(net, state_dict)
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)

    @staticmethod
    def _read(weights_path) -> dict:
        if isinstance(weights_path, dict):
            return weights_path
        if weights_path is None or not os.path.isfile(os.fspath(weights_path)):
            raise ValueError(
                "weights_path must be an existing Inception-v3 state dict file (for standard FID: pytorch-fid's "
                f"pt_inception-2015-12-05-6726825d.pth); found {weights_path!r}"
            )
        return torch.load(os.fspath(weights_path), map_location="cpu", weights_only=True)

    def _pool3(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 299, 299)`` in [-1, 1] -> ``(B, 2048)``: torchvision's trunk up to the average pool."""
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                      n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.avgpool):
            x = layer(x)
        return torch.flatten(x, 1)

    @torch.no_grad()
    def __call__(self, images, batch_size: int = 50) -> np.ndarray:
        """Extracts features.

        Args:
            images: ``(N, C, H, W)`` float tensor (or array) in [0, 1], ``C`` in {1, 3}.
            batch_size: images per forward pass.

        Returns:
            ``(N, 2048)`` float64 pool3 features.
        """
        images = check_images(images, "images")
        feats = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(self.device, torch.float32)
            x = x.expand(-1, 3, -1, -1)  # grayscale tiled to 3 channels (no-op for RGB)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            feats.append(self._pool3(2.0 * x - 1.0).cpu().double())
        return torch.cat(feats).numpy()


def check_images(images, name: str) -> torch.Tensor:
    """Checks a ``(N, C, H, W)`` float batch in [0, 1] with ``C`` in {1, 3}; returns it as a tensor."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (N, C, H, W) with C in {{1, 3}}; found {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1]; found dtype {x.dtype}")
    if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1]; found range [{x.min().item()}, {x.max().item()}]")
    return x
