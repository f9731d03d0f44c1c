"""LORD's VGG16 perceptual loss, the reconstruction loss ell on real images (paper Sec. 3.2 Eq. 1, Sec. 3.3 Eq. 2).

What LORD does (read from both official implementations):

- Layers: VGG16 conv1_2, conv2_2, conv3_2, conv4_3 and pool5, **after ReLU**. The Keras original
  (avivga/lord, ``layers=[2, 5, 8, 13, 18]`` of ``keras.applications.VGG16``) takes conv layers whose
  ReLU is built in. The PyTorch port (avivga/lord-pytorch, ``layers=[2, 7, 12, 21, 30]`` of
  ``vgg16.features``) stores the conv outputs, but torchvision's next ``ReLU(inplace=True)`` overwrites
  them, so it also ends up with ReLU outputs. We take the ReLU modules' outputs (indices 3, 8, 13, 22)
  and pool5 (index 30) explicitly.
- Distance: per layer, the mean absolute difference; grayscale tiled to 3 channels.
- Combination: the Keras original averages the five layers (weights ``[1]*5`` normalised to sum 1) and
  has no pixel term. The PyTorch port sums the five layers and adds a pixel L1 term. Our default is
  the original (``layer_weights = 1/5 each``, ``pixel_weight = 0``). ``layer_weights=[1]*5,
  pixel_weight=1`` gives the PyTorch port's scale, which is 5x larger and changes how the loss balances
  against the code penalty lambda.
- Normalisation: the Keras original scales to 0-255 and applies caffe preprocessing, which is right
  for Keras' weights. The PyTorch port feeds [0, 1] images unnormalised. For torchvision's ImageNet
  weights the right input is ImageNet mean/std normalisation, so that is what we do.

Pretrained weights are never downloaded. Users pass torchvision's ``vgg16`` ImageNet state dict
(``features.*`` keys; ``classifier.*`` is ignored) as ``latent.vgg_weights``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# torchvision's vgg16 configuration "D": conv widths, "M" = 2x2 max-pool
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# index in vgg16.features of each output we compare: the ReLU after the named conv, and pool5
FEATURE_LAYERS = {"conv1_2": 3, "conv2_2": 8, "conv3_2": 13, "conv4_3": 22, "pool5": 30}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (same indices, so ``features.N.*`` keys load), without the
    102M-parameter classifier we would never use; ReLUs are not in-place so every output we keep stays
    intact."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(in_ch, v, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


def _load_vgg_features(features: nn.Sequential, path: str) -> None:
    """Fill ``features`` from a torchvision vgg16 state dict file (``features.*`` keys)."""
    if not os.path.isfile(path):
        raise ValueError(f"latent.vgg_weights={path!r} does not exist or is not a file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"latent.vgg_weights={path!r} has no 'features.*' keys; expected a torchvision vgg16 "
                         f"state dict (keys start with {sorted(state)[:3]})")
    try:
        features.load_state_dict(feats, strict=True)
    except RuntimeError as err:
        raise ValueError(f"latent.vgg_weights={path!r} is not a torchvision vgg16 state dict: {err}") from err


class VGGPerceptualLoss(nn.Module):
    """LORD's perceptual loss: L1 between VGG16 features (ReLU outputs of conv1_2, conv2_2, conv3_2,
    conv4_3, and pool5) of the reconstruction and the target; see the module docstring for LORD's two
    implementations and our defaults.

    The VGG parameters are frozen (``requires_grad=False``); the gradient flows to the first input.
    Inputs are images in [0, 1] with 1 or 3 channels; grayscale is tiled to 3 channels and everything
    is normalised with the ImageNet mean/std.

    Args:
        weights_path: torchvision vgg16 state dict file (``latent.vgg_weights``).
        allow_random_weights: allow ``weights_path=None`` and keep random VGG weights (tests only: a
            random VGG is not a perceptual metric).
        layer_weights: weight of each of the five layers' mean L1; default 1/5 each (LORD's Keras original).
        pixel_weight: weight of an extra pixel-space mean L1 term; default 0 (LORD-PyTorch uses 1).

    Raises:
        ValueError: if no weights are given and random weights are not allowed, the file is missing or
            not a vgg16 state dict, or ``layer_weights`` does not have five entries.
    """

    def __init__(self, weights_path: str | None, allow_random_weights: bool = False,
                 layer_weights: Sequence[float] | None = None, pixel_weight: float = 0.0) -> None:
        super().__init__()
        if weights_path is None and not allow_random_weights:
            raise ValueError("latent.vgg_weights is not set: the perceptual loss needs pretrained VGG16 weights. "
                             "Download torchvision's vgg16 ImageNet weights (vgg16-397923af.pth) yourself and pass "
                             "the file as latent.vgg_weights (nothing is downloaded automatically)")
        n = len(FEATURE_LAYERS)
        layer_weights = [1.0 / n] * n if layer_weights is None else list(layer_weights)
        if len(layer_weights) != n:
            raise ValueError(f"layer_weights needs {n} entries ({list(FEATURE_LAYERS)}), got {len(layer_weights)}")
        self.layer_weights, self.pixel_weight = layer_weights, float(pixel_weight)
        self.features = _vgg16_features()[: max(FEATURE_LAYERS.values()) + 1]
        if weights_path is not None:
            _load_vgg_features(self.features, weights_path)
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _extract(self, x: Tensor) -> list[Tensor]:
        """Map normalised images (N, 3, H, W) to the five feature maps, in FEATURE_LAYERS order."""
        keep = set(FEATURE_LAYERS.values())
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)  # (N, C_i, H_i, W_i)
            if i in keep:
                out.append(x)
        return out

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        """Perceptual distance between a reconstruction and its target.

        Args:
            x: reconstruction in [0, 1], shape (B, C, H, W), C in {1, 3}; receives the gradient.
            target: image in [0, 1], same shape as ``x``.

        Returns:
            Scalar loss: sum over layers of weight * mean |phi_l(x) - phi_l(target)| (+ pixel term).
        """
        if x.shape != target.shape:
            raise ValueError(f"x and target must have the same shape, got {tuple(x.shape)} and {tuple(target.shape)}")
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
        b = x.shape[0]
        both = torch.cat([x, target], dim=0)  # (2B, C, H, W)
        both = both.expand(-1, 3, -1, -1)  # (2B, 3, H, W); grayscale tiled, RGB unchanged
        both = (both - self.mean) / self.std  # (2B, 3, H, W)
        loss = self.pixel_weight * F.l1_loss(x, target)  # scalar
        for w, f in zip(self.layer_weights, self._extract(both), strict=True):
            loss = loss + w * F.l1_loss(f[:b], f[b:])  # f: (2B, C_l, H_l, W_l)
        return loss
