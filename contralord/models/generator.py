"""LORD's generator G(d, g^c + z, g^r + z), adapted to ContraLORD (paper Sec. 3.2, Eq. 1; Sec. 3.3, Eq. 2).

Letters: d is the discriminative (class) code, g^c and g^r the content and residual parts of the
generative code, z ~ N(0, sigma^2 I) the stage-1 noise (added by the caller, not here).

Following LORD (Gabbay & Hoshen, 2020; avivga/lord and avivga/lord-pytorch), the class code d enters
only through adaptive instance normalisation (one ``Linear(class_dim -> 2 * width)`` per AdaIN layer),
and the spatial path starts from the generative code ``[g^c, g^r]``: three fully connected layers to a
``width x 4 x 4`` tensor, then per block (x2 nearest upsample -> 3x3 conv -> LeakyReLU -> AdaIN), then a
5x5 conv to width // 4 channels (LORD's 64 at its width 256), a 7x7 conv to the image channels and a
sigmoid. 64x64 images use four blocks (LORD's setting), 32x32 images three.

Deviation: LORD's LeakyReLU slope is 0.3 in the Keras original (Keras default) and 0.01 in the PyTorch
port (PyTorch default); we use 0.2 (``NEGATIVE_SLOPE``), the DCGAN convention, for both the generator and
the LORD encoder. AdaIN follows LORD: the scale is the raw linear output (not ``1 + scale``).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEGATIVE_SLOPE = 0.2  # LeakyReLU slope of the generator and the LORD encoder
SUPPORTED_IMAGE_SIZES = {32: 3, 64: 4}  # image_size -> number of (upsample, conv, AdaIN) blocks
INITIAL_SIZE = 4  # spatial size of the tensor produced by the fully connected layers
ADAIN_EPS = 1e-5  # variance epsilon of the instance normalisation (LORD-PyTorch's F.batch_norm default)


class AdaIN(nn.Module):
    """Adaptive instance normalisation driven by the class code d.

    Each channel is normalised to zero mean and unit variance over its spatial positions, then scaled
    and shifted by ``Linear(class_dim -> 2 * num_channels)(d)``. This is the only place where the class
    code enters the generator. The scale's bias starts at 1 (an initialisation choice; see __init__).

    Args:
        class_dim: size of the class code d.
        num_channels: number of feature-map channels to modulate.
    """

    def __init__(self, class_dim: int, num_channels: int) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.modulation = nn.Linear(class_dim, 2 * num_channels)
        # Start as an identity scale: the scale half of the bias at 1 (PyTorch's default would draw it
        # uniformly around 0, which flips and shrinks every channel at random). Same function class as
        # LORD's; on our CPU preset it cut the stage-1 reconstruction after 10 epochs from 0.038 to 0.015.
        with torch.no_grad():
            self.modulation.bias[:num_channels].fill_(1.0)

    def forward(self, x: Tensor, class_code: Tensor) -> Tensor:
        """Normalise ``x`` per instance and channel, then apply the class-dependent scale and bias.

        Args:
            x: feature map, shape (B, C, H, W).
            class_code: class code d, shape (B, Dd).

        Returns:
            Modulated feature map, shape (B, C, H, W); channel c has spatial mean ``bias[:, c]`` and
            spatial standard deviation ``|scale[:, c]|`` (up to ADAIN_EPS).
        """
        scale, bias = self.modulation(class_code).chunk(2, dim=1)  # (B, C), (B, C)
        x = F.instance_norm(x, eps=ADAIN_EPS)  # (B, C, H, W), zero mean / unit var per (b, c)
        return x * scale[:, :, None, None] + bias[:, :, None, None]  # (B, C, H, W)


class _UpBlock(nn.Module):
    """One LORD generator block: x2 nearest upsample -> 3x3 conv -> LeakyReLU -> AdaIN."""

    def __init__(self, class_dim: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.adain = AdaIN(class_dim, width)

    def forward(self, x: Tensor, class_code: Tensor) -> Tensor:
        """Map (B, W, S, S) and (B, Dd) to (B, W, 2S, 2S)."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, W, 2S, 2S)
        x = F.leaky_relu(self.conv(x), NEGATIVE_SLOPE)  # (B, W, 2S, 2S)
        return self.adain(x, class_code)  # (B, W, 2S, 2S)


def _check_positive(**dims: int) -> None:
    for key, value in dims.items():
        if value <= 0:
            raise ValueError(f"{key} must be a positive integer, got {value}")


class Generator(nn.Module):
    """LORD's generator, adapted: the class code d enters only through AdaIN; the spatial input is [g^c + z, g^r + z].

    Args:
        class_dim: size of the class code d (``latent.class_dim``; paper 256).
        content_dim: size of the content code g^c (``latent.content_dim``).
        residual_dim: size of the residual code g^r (``latent.residual_dim``).
        channels: number of image channels (1 or 3 in practice).
        image_size: output height and width; 32 (three blocks) or 64 (four blocks, LORD's setting).
        width: channels of every AdaIN block (LORD's ``adain_dim``, 256); narrow values such as 64
            make CPU tests and presets cheap.
        style_from_codes: AdaIN is driven by [g^c, g^r] instead of d, and ``class_dim`` must be 0. This
            is the labelled-factor structure (``contralord.labels``): there is no class code, and the
            factor codes must reach the per-channel statistics that instance normalisation would
            otherwise erase from the spatial path (zerodim modulates with all codes, as StyleGAN).

    Raises:
        ValueError: if ``image_size`` is not supported or a dimension is not positive.
    """

    def __init__(
        self,
        class_dim: int,
        content_dim: int,
        residual_dim: int,
        channels: int,
        image_size: int,
        width: int = 256,
        style_from_codes: bool = False,
    ) -> None:
        super().__init__()
        if image_size not in SUPPORTED_IMAGE_SIZES:
            raise ValueError(
                f"data.image_size={image_size} is not supported by the generator; "
                f"supported sizes: {sorted(SUPPORTED_IMAGE_SIZES)}"
            )
        _check_positive(**{"latent.content_dim": content_dim, "latent.residual_dim": residual_dim,
                           "channels": channels, "width": width})
        if (class_dim == 0) != style_from_codes or class_dim < 0:
            raise ValueError(f"latent.class_dim must be 0 exactly when the style comes from the codes, got {class_dim}")
        self.class_dim, self.content_dim, self.residual_dim = class_dim, content_dim, residual_dim
        self.channels, self.image_size, self.width = channels, image_size, width
        self.style_from_codes = style_from_codes
        self.fc = self._build_fc(content_dim + residual_dim, width)
        num_blocks = SUPPORTED_IMAGE_SIZES[image_size]
        style_dim = content_dim + residual_dim if style_from_codes else class_dim
        self.blocks = nn.ModuleList(_UpBlock(style_dim, width) for _ in range(num_blocks))
        mid = max(width // 4, 8)  # LORD: 64 channels at width 256; narrow CPU generators scale it down
        self.conv_mid = nn.Conv2d(width, mid, kernel_size=5, padding=2)
        self.conv_out = nn.Conv2d(mid, channels, kernel_size=7, padding=3)

    @staticmethod
    def _build_fc(in_dim: int, width: int) -> nn.Sequential:
        """LORD's three fully connected layers: in_dim -> 16W/8 -> 16W/4 -> 16W (W = width)."""
        area = INITIAL_SIZE * INITIAL_SIZE
        sizes = [in_dim, (area * width) // 8, (area * width) // 4, area * width]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(NEGATIVE_SLOPE)]
        return nn.Sequential(*layers)

    def forward(self, class_code: Tensor, content_code: Tensor, residual_code: Tensor) -> Tensor:
        """Decode the three codes into an image.

        Args:
            class_code: d, shape (B, Dd).
            content_code: g^c (+ z in stage-1 training), shape (B, Dc).
            residual_code: g^r (+ z in stage-1 training), shape (B, Dr).

        Returns:
            Images in [0, 1], shape (B, channels, image_size, image_size).
        """
        g = torch.cat([content_code, residual_code], dim=1)  # (B, Dc + Dr)
        style = g if self.style_from_codes else class_code  # (B, Dc + Dr) or (B, Dd)
        x = self.fc(g)  # (B, 16 * W)
        x = x.view(-1, self.width, INITIAL_SIZE, INITIAL_SIZE)  # (B, W, 4, 4)
        for block in self.blocks:
            x = block(x, style)  # (B, W, 2S, 2S); ends at (B, W, image_size, image_size)
        x = F.leaky_relu(self.conv_mid(x), NEGATIVE_SLOPE)  # (B, width // 4, image_size, image_size)
        return torch.sigmoid(self.conv_out(x))  # (B, channels, image_size, image_size)
