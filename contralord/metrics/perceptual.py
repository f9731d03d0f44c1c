"""LPIPS perceptual distance (Zhang et al., 2018), the content-transfer metric of Sec. 4.2 / Table 3.

Computed through the ``lpips`` package (imported only when used). ``lpips.LPIPS(pretrained=True)``
normally downloads its backbone (AlexNet / VGG16 / SqueezeNet 1.1 ImageNet weights) from torchvision
at construction. We never download: the model is built with ``pnet_rand=True`` (random backbone, no
download; the calibrated linear heads still load from ``lpips/weights/v0.1/<net>.pth``, shipped inside
the package), then the backbone is overwritten from a torchvision state dict the user supplies
(``weights_path``; by default the file torchvision itself would have cached under
``torch.hub.get_dir()/checkpoints``). ``random_backbone=True`` skips that step: meaningless numbers,
for tests of the code path only.

Inputs are pairs of images in [0, 1] (mapped to [-1, 1] by LPIPS' ``normalize=True``), grayscale is
tiled to 3 channels, and the score is the mean LPIPS over pairs.
"""

from __future__ import annotations

import os
import warnings

import torch

from contralord.metrics.inception import check_images

# torchvision's cache file names of the backbones LPIPS uses (torchvision.models.*_Weights.IMAGENET1K_V1).
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def default_backbone_path(net: str) -> str:
    """Where torchvision caches ``net``'s ImageNet weights: ``<torch hub dir>/checkpoints/<file>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", BACKBONE_FILES[net])


def _load_backbone(pnet: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Loads torchvision ``features.<i>.*`` tensors into LPIPS' ``slice<k>.<i>.*`` modules."""
    slice_of = {idx: name for name, part in pnet.named_children() for idx, _ in part.named_children()}
    mapped = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        idx = rest.partition(".")[0]
        if head == "features" and idx in slice_of:
            mapped[f"{slice_of[idx]}.{rest}"] = value
        elif head.startswith("slice"):  # already in LPIPS' layout
            mapped[key] = value
    own = pnet.state_dict()
    missing = sorted(set(own) - set(mapped))
    wrong = sorted(k for k in own.keys() & mapped.keys() if tuple(mapped[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise ValueError(
            f"weights_path must hold the torchvision backbone state dict of this LPIPS net; {source} has "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}) and {len(wrong)} of wrong shape (e.g. {wrong[:3]})"
        )
    pnet.load_state_dict({k: mapped[k] for k in own})


def build_lpips(net: str = "alex", weights_path=None, random_backbone: bool = False):
    """Builds an ``lpips.LPIPS`` model in eval mode without any download.

    Args:
        net: backbone, one of ``"alex"``, ``"vgg"``, ``"squeeze"``.
        weights_path: torchvision state dict file of the backbone (None: torchvision's cache path).
        random_backbone: keep the random backbone (tests only; scores are not LPIPS).

    Returns:
        The model (calibrated linear heads from the lpips package).
    """
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}; found {net!r}")
    path = None
    if not random_backbone:
        path = os.fspath(weights_path) if weights_path is not None else default_backbone_path(net)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights_path must be an existing torchvision {net} state dict file "
                f"({BACKBONE_FILES[net]}); found {path!r} missing (nothing is downloaded)"
            )
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        _load_backbone(model.net, torch.load(path, map_location="cpu", weights_only=True), path)
    return model.eval()


@torch.no_grad()
def compute_lpips(
    images_a, images_b, net: str = "alex", weights_path=None, *, random_backbone: bool = False,
    model=None, batch_size: int = 32, device="cpu",
) -> dict[str, float]:
    """Mean LPIPS distance between paired images.

    Args:
        images_a: ``(N, C, H, W)`` float in [0, 1], ``C`` in {1, 3}.
        images_b: same shape as ``images_a``; pair ``i`` is ``(images_a[i], images_b[i])``.
        net: LPIPS backbone (``"alex"`` is the LPIPS authors' recommended metric).
        weights_path: torchvision backbone state dict (see ``build_lpips``).
        random_backbone: tests only (see ``build_lpips``).
        model: a prebuilt ``lpips.LPIPS`` (e.g. from ``build_lpips``) to reuse; then the three
            arguments above are ignored.
        batch_size: pairs per forward pass.
        device: where the network runs.

    Returns:
        ``{"lpips"}``: mean over the ``N`` pairs (0 for identical images, larger is more different).
    """
    a, b = check_images(images_a, "images_a"), check_images(images_b, "images_b")
    if a.shape != b.shape:
        raise ValueError(f"images_b must have the shape of images_a {tuple(a.shape)}; found {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError(f"images_a must hold at least 1 image; found shape {tuple(a.shape)}")
    model = (model if model is not None else build_lpips(net, weights_path, random_backbone)).to(device)
    total = 0.0
    for s in range(0, a.shape[0], batch_size):
        xa, xb = (t[s : s + batch_size].to(device, torch.float32).expand(-1, 3, -1, -1) for t in (a, b))
        total += float(model(xa, xb, normalize=True).double().sum())  # (B, 1, 1, 1) distances
    return {"lpips": total / a.shape[0]}
