import torch

from contralord.stage2.augment import augment, draw_params


def _images(b=6, c=3, s=16):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(0))


def test_augment__disabled_is_identity():
    x = _images()
    params = draw_params(len(x), torch.Generator().manual_seed(1), crop_scale_min=1.0, flip=False, color_jitter=0.0)
    torch.testing.assert_close(augment(x, params), x, atol=1e-5, rtol=0)


def test_augment__flip_only_mirrors():
    x = _images(b=64)
    params = draw_params(len(x), torch.Generator().manual_seed(2), crop_scale_min=1.0, flip=True, color_jitter=0.0)
    out = augment(x, params)
    flipped = params.flip
    assert 0 < int(flipped.sum()) < len(x)
    torch.testing.assert_close(out[flipped], x[flipped].flip(-1), atol=1e-5, rtol=0)


def test_augment__same_generator_same_views_and_slices_compose():
    x = _images(b=8)
    p1 = draw_params(8, torch.Generator().manual_seed(3), 0.2, True, 0.4)
    p2 = draw_params(8, torch.Generator().manual_seed(3), 0.2, True, 0.4)
    full = augment(x, p1)
    torch.testing.assert_close(full, augment(x, p2))
    halves = torch.cat([augment(x[:4], p1.slice(0, 4)), augment(x[4:], p1.slice(4, 8))])
    torch.testing.assert_close(halves, full)


def test_augment__changes_images_and_stays_in_range():
    x = _images(b=8, c=1)
    out = augment(x, draw_params(8, torch.Generator().manual_seed(4), 0.2, True, 0.4))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out, x)
