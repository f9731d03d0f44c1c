"""Tests for contralord.models: generator, encoders, heads, perceptual loss, FLOP counter (CPU, tiny)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from contralord.models.encoders import BACKBONES, build_backbone
from contralord.models.flops import count_forward_flops
from contralord.models.generator import AdaIN, Generator
from contralord.models.heads import EncoderHeads, ProjectionHead
from contralord.models.perceptual import VGGPerceptualLoss

B, DD, DC, DR = 2, 8, 6, 5


def _codes(batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(batch, DD), torch.randn(batch, DC), torch.randn(batch, DR)


@pytest.fixture(scope="module")
def vgg_loss() -> VGGPerceptualLoss:
    torch.manual_seed(0)
    return VGGPerceptualLoss(None, allow_random_weights=True)


# ----------------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("image_size, n_blocks", [(32, 3), (64, 4)])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator__shape_range_and_blocks(image_size, n_blocks, channels):
    gen = Generator(DD, DC, DR, channels, image_size, width=16)
    out = gen(*_codes())
    assert out.shape == (B, channels, image_size, image_size)
    assert out.min() >= 0 and out.max() <= 1
    assert len(gen.blocks) == n_blocks
    # LORD's FC sizes: in -> 16W/8 -> 16W/4 -> 16W
    assert [m.out_features for m in gen.fc if isinstance(m, nn.Linear)] == [32, 64, 256]


@pytest.mark.parametrize("image_size", [16, 48, 128])
def test_generator__unsupported_image_size__raises(image_size):
    with pytest.raises(ValueError, match=r"data\.image_size.*\[32, 64\]"):
        Generator(DD, DC, DR, 3, image_size, width=16)


def test_generator__each_code_changes_output():
    torch.manual_seed(0)
    gen = Generator(DD, DC, DR, 3, 32, width=16)
    d, c, r = _codes()
    base = gen(d, c, r)
    for changed in (gen(d + 1, c, r), gen(d, c + 1, r), gen(d, c, r + 1)):
        assert (changed - base).abs().max() > 1e-4


def test_generator__class_code_enters_only_through_adain():
    torch.manual_seed(0)
    gen = Generator(DD, DC, DR, 3, 32, width=16)
    for block in gen.blocks:
        nn.init.zeros_(block.adain.modulation.weight)  # AdaIN now ignores d
    d, c, r = _codes()
    torch.testing.assert_close(gen(d, c, r), gen(torch.randn_like(d), c, r))


def test_generator__gradient_reaches_all_codes():
    gen = Generator(DD, DC, DR, 1, 32, width=16)
    codes = [t.requires_grad_() for t in _codes()]
    gen(*codes).mean().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in codes)


def test_adain__output_moments_equal_class_scale_and_bias():
    torch.manual_seed(0)
    adain = AdaIN(DD, 4)
    x, d = torch.randn(B, 4, 8, 8), torch.randn(B, DD)
    scale, bias = adain.modulation(d).chunk(2, dim=1)
    out = adain(x, d)
    torch.testing.assert_close(out.mean(dim=(2, 3)), bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale.abs(), atol=1e-4, rtol=1e-4)


def test_adain__invariant_to_per_channel_affine_input():
    adain = AdaIN(DD, 4)
    x, d = torch.randn(B, 4, 8, 8), torch.randn(B, DD)
    a, b = torch.rand(B, 4, 1, 1) + 0.5, torch.randn(B, 4, 1, 1)
    torch.testing.assert_close(adain(a * x + b, d), adain(x, d), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------ encoders
@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_build_backbone__feature_shape(name, image_size, channels):
    net, feat_dim = build_backbone(name, channels, image_size, width=8)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(B, channels, image_size, image_size))
    assert feat_dim == {"lord": 256, "resnet18": 512, "resnet50": 2048}[name]
    assert out.shape == (B, feat_dim)


def test_lord_encoder__no_batchnorm_and_lord_widths():
    net, _ = build_backbone("lord", 3, 64)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 256]
    assert net.fc[0].in_features == 256 * 4 * 4  # LORD's 4096 at 64x64


def test_lord_encoder__bad_image_size__raises():
    with pytest.raises(ValueError, match=r"data\.image_size"):
        build_backbone("lord", 3, 40)


def test_resnet__small_images__cifar_stem():
    net, _ = build_backbone("resnet18", 1, 32)
    assert net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)


def test_resnet__large_images__imagenet_stem():
    net, _ = build_backbone("resnet18", 1, 96)
    assert net.conv1.stride == (2, 2) and net.conv1.kernel_size == (7, 7) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.MaxPool2d)


def test_build_backbone__unknown_name__raises():
    with pytest.raises(ValueError, match=r"encoder\.backbone.*resnet50"):
        build_backbone("vit", 3, 32)


def _reference_resnet18() -> nn.Module:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    for m in ref.modules():  # non-trivial BN statistics, so the round trip also checks buffers
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return ref.eval()


@pytest.mark.parametrize("wrap", [False, True])
def test_pretrained__round_trip__features_equal(tmp_path, wrap):
    ref = _reference_resnet18()
    state = ref.state_dict()
    if wrap:  # a DDP checkpoint: {"state_dict": {"module.<key>": ...}}
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(state, tmp_path / "r18.pth")
    net, _ = build_backbone("resnet18", 3, 96, pretrained_path=str(tmp_path / "r18.pth"))
    ref.fc = nn.Identity()
    x = torch.rand(B, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref(x))


def test_pretrained__small_image_stem__conv1_skipped_with_warning(tmp_path):
    ref = _reference_resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    with pytest.warns(UserWarning, match="conv1.weight"):
        net, _ = build_backbone("resnet18", 3, 32, pretrained_path=str(tmp_path / "r18.pth"))
    assert net.conv1.weight.shape == (64, 3, 3, 3)
    torch.testing.assert_close(net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


def test_pretrained__missing_file__raises(tmp_path):
    with pytest.raises(ValueError, match=r"encoder\.pretrained_path"):
        build_backbone("resnet18", 3, 32, pretrained_path=str(tmp_path / "nope.pth"))


def test_pretrained__no_matching_keys__raises(tmp_path):
    torch.save({"encoder_q.conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"encoder\.pretrained_path.*no key matches"):
        build_backbone("resnet18", 3, 32, pretrained_path=str(tmp_path / "other.pth"))


# --------------------------------------------------------------------------------------------- heads
@pytest.mark.parametrize("hidden_dim, n_linear", [(0, 1), (32, 2)])
def test_heads__shapes(hidden_dim, n_linear):
    heads = EncoderHeads(feat_dim=16, class_dim=DD, content_dim=DC, residual_dim=DR, hidden_dim=hidden_dim)
    d, c, r = heads(torch.randn(B, 16))
    assert (d.shape, c.shape, r.shape) == ((B, DD), (B, DC), (B, DR))
    assert sum(isinstance(m, nn.Linear) for m in heads.class_head.modules()) == n_linear
    assert ProjectionHead(16, 3, hidden_dim)(torch.randn(B, 16)).shape == (B, 3)


# ---------------------------------------------------------------------------------------- perceptual
def test_perceptual__identical_is_zero_different_is_positive(vgg_loss):
    x = torch.rand(B, 3, 32, 32)
    assert vgg_loss(x, x.clone()).item() == 0.0
    assert vgg_loss(x, torch.rand_like(x)).item() > 0.0


def test_perceptual__gradient_reaches_x_and_vgg_frozen(vgg_loss):
    x, target = torch.rand(B, 3, 32, 32, requires_grad=True), torch.rand(B, 3, 32, 32)
    vgg_loss(x, target).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg_loss.parameters())


def test_perceptual__grayscale_equals_tiled_rgb(vgg_loss):
    x, target = torch.rand(B, 1, 32, 32), torch.rand(B, 1, 32, 32)
    gray = vgg_loss(x, target)
    assert gray.ndim == 0
    torch.testing.assert_close(gray, vgg_loss(x.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1)))


def test_perceptual__features_are_relu_outputs_and_pool5(vgg_loss):
    feats = vgg_loss._extract(torch.randn(B, 3, 32, 32))
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 1, 1)]
    assert all(f.min() >= 0 for f in feats)  # post-ReLU, as in both LORD implementations


def test_perceptual__pixel_term_only__equals_l1():
    loss = VGGPerceptualLoss(None, allow_random_weights=True, layer_weights=[0.0] * 5, pixel_weight=1.0)
    x, target = torch.rand(B, 3, 32, 32), torch.rand(B, 3, 32, 32)
    torch.testing.assert_close(loss(x, target), F.l1_loss(x, target))


def test_perceptual__no_weights__raises():
    with pytest.raises(ValueError, match=r"latent\.vgg_weights.*pretrained VGG16"):
        VGGPerceptualLoss(None)


def test_perceptual__missing_file__raises(tmp_path):
    with pytest.raises(ValueError, match=r"latent\.vgg_weights"):
        VGGPerceptualLoss(str(tmp_path / "vgg16.pth"))


def test_perceptual__loads_torchvision_layout(tmp_path, vgg_loss):
    torch.manual_seed(2)
    tv_features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])  # vgg16().features
    state = {f"features.{k}": v for k, v in tv_features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    torch.save(state, tmp_path / "vgg16.pth")
    loaded = VGGPerceptualLoss(str(tmp_path / "vgg16.pth"))
    torch.testing.assert_close(loaded.features[28].weight, tv_features[28].weight)
    x, target = torch.rand(B, 3, 32, 32), torch.rand(B, 3, 32, 32)
    assert not torch.equal(loaded(x, target), vgg_loss(x, target))


def test_perceptual__file_without_features__raises(tmp_path):
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "cls.pth")
    with pytest.raises(ValueError, match=r"latent\.vgg_weights.*features"):
        VGGPerceptualLoss(str(tmp_path / "cls.pth"))


# --------------------------------------------------------------------------------------------- flops
def test_count_forward_flops__linear_closed_form():
    assert count_forward_flops(nn.Linear(7, 5), torch.randn(3, 7)) == 2 * 3 * 7 * 5


def test_count_forward_flops__conv_closed_form():
    conv = nn.Conv2d(2, 4, kernel_size=3, padding=1)
    assert count_forward_flops(conv, torch.randn(3, 2, 6, 6)) == 2 * 3 * 4 * 6 * 6 * 2 * 3 * 3


def test_count_forward_flops__generator_scales_with_batch():
    gen = Generator(DD, DC, DR, 3, 32, width=8)
    one, two = count_forward_flops(gen, *_codes(1)), count_forward_flops(gen, *_codes(2))
    assert one > 0 and two == 2 * one


def test_models__no_warnings_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_backbone("resnet18", 3, 32)
        Generator(DD, DC, DR, 3, 64, width=8)
