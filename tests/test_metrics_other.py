"""Linear probe, FID and LPIPS (Sec. 4.2): closed forms and honest properties on random weights."""

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from torchvision.models import inception as tv_inception

from contralord.metrics import (
    InceptionFeatures,
    build_lpips,
    compute_fid,
    compute_linear_probe,
    compute_lpips,
    fid_from_images,
    frechet_distance,
)
from contralord.metrics.inception import _FIDInceptionA, _FIDInceptionE2
from contralord.metrics.linear_probe import topk_accuracy

# ---------------------------------------------------------------- linear probe


def _blobs(rng, n, k, d=4, spread=0.1):
    labels = np.arange(n) % k
    centers = np.eye(k, d) * 10.0
    return centers[labels] + spread * rng.normal(size=(n, d)), labels


def test_linear_probe__separable_data_is_perfect():
    rng = np.random.default_rng(0)
    (x, y), (x_te, y_te) = _blobs(rng, 90, 3), _blobs(rng, 30, 3)
    assert compute_linear_probe(x, y, x_te, y_te) == {"top1": 1.0, "top5": 1.0}


def test_linear_probe__unseen_test_label_is_wrong_and_top5_at_least_top1():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 200, 8, d=8, spread=6.0)
    x_te, y_te = _blobs(rng, 80, 8, d=8, spread=6.0)
    y_te[:4] = 99  # never seen in training
    s = compute_linear_probe(x, y, x_te, y_te)
    assert 0.0 <= s["top1"] <= s["top5"] <= 76 / 80


def test_topk_accuracy__hand_case():
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    classes = np.array([10, 20, 30])
    labels = np.array([20, 30])
    assert topk_accuracy(proba, classes, labels, 1) == 0.5
    assert topk_accuracy(proba, classes, labels, 2) == 1.0


# ---------------------------------------------------------------- FID


def test_frechet_distance__diagonal_gaussians_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3.0, size=5), rng.uniform(0.1, 3.0, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    q = ortho_group.rvs(5, random_state=1)  # a shared rotation leaves the distance unchanged
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_compute_fid__sample_with_itself_is_zero_and_1d_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    assert abs(compute_fid(x, x)["fid"]) < 1e-6
    a, b = rng.normal(1.0, 2.0, size=(400, 1)), rng.normal(-1.0, 0.5, size=(300, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert compute_fid(a, b)["fid"] == pytest.approx(expected, rel=1e-10)


def test_compute_fid__rank_deficient_covariances_stay_finite():
    x = np.random.default_rng(0).normal(size=(4, 10))  # N < K: singular covariance
    assert np.isfinite(compute_fid(x, x[::-1] + 1.0)["fid"])
    assert abs(compute_fid(x, x)["fid"]) < 1e-3


# ---------------------------------------------------------------- Inception features


def _inception_state(num_classes=1000, aux_logits=True):
    torch.manual_seed(0)
    net = tv_inception.inception_v3(weights=None, aux_logits=aux_logits, init_weights=False, num_classes=num_classes)
    return net.state_dict()


def test_fid_inception_block__pool_branch_ignores_padding():
    torch.manual_seed(0)
    block = _FIDInceptionA(192, pool_features=32).eval()
    plain = tv_inception.InceptionA(192, pool_features=32).eval()
    plain.load_state_dict(block.state_dict())
    x = torch.randn(1, 192, 6, 6)
    with torch.no_grad():
        out, ref = block(x), plain(x)
        pool = block.branch_pool(torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    torch.testing.assert_close(out[:, :-32], ref[:, :-32])
    torch.testing.assert_close(out[:, -32:], pool)
    assert not torch.allclose(out[:, -32:], ref[:, -32:])


def test_inception_features__torchvision_and_fid_state_dicts():
    images = torch.rand(2, 1, 40, 40)
    tv = InceptionFeatures(_inception_state())
    fid = InceptionFeatures(_inception_state(num_classes=1008, aux_logits=False))  # pt_inception's layout
    assert not tv.fid_standard and fid.fid_standard
    feats = tv(images)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    np.testing.assert_array_equal(feats, tv(images.expand(-1, 3, -1, -1)))  # grayscale == tiled RGB
    assert type(fid.net.Mixed_7c) is _FIDInceptionE2 and type(tv.net.Mixed_7c) is tv_inception.InceptionE


def test_inception_features__missing_or_mismatched_weights_name_weights_path(tmp_path):
    with pytest.raises(ValueError, match="weights_path"):
        InceptionFeatures(tmp_path / "nope.pth")
    state = _inception_state()
    state["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match="weights_path.*wrong shape"):
        InceptionFeatures(state)


@pytest.mark.slow
def test_fid_from_images__same_images_near_zero(tmp_path):
    path = tmp_path / "inception.pth"
    torch.save(_inception_state(num_classes=1008, aux_logits=False), path)
    images = torch.rand(4, 3, 32, 32)
    assert abs(fid_from_images(images, images, path)["fid"]) < 1e-2


# ---------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def random_lpips():
    torch.manual_seed(0)
    return build_lpips("alex", random_backbone=True)


def test_lpips__random_backbone_properties(random_lpips):
    a, b = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    assert compute_lpips(a, a, model=random_lpips)["lpips"] == 0.0
    ab = compute_lpips(a, b, model=random_lpips)["lpips"]
    assert ab > 0.0
    assert compute_lpips(b, a, model=random_lpips)["lpips"] == pytest.approx(ab, rel=1e-6)
    gray = torch.rand(2, 1, 64, 64)
    tiled = compute_lpips(gray, gray.flip(0), model=random_lpips)["lpips"]
    assert tiled == pytest.approx(
        compute_lpips(gray.expand(-1, 3, -1, -1), gray.flip(0).expand(-1, 3, -1, -1), model=random_lpips)["lpips"]
    )


def test_lpips__loads_user_backbone_without_download(tmp_path):
    torch.manual_seed(1)
    from torchvision.models import alexnet

    features = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    path = tmp_path / "alexnet.pth"
    torch.save(features, path)
    model = build_lpips("alex", weights_path=path)
    loaded = model.net.state_dict()
    torch.testing.assert_close(loaded["slice3.6.weight"], features["features.6.weight"])
    torch.testing.assert_close(loaded["slice1.0.bias"], features["features.0.bias"])
    a = torch.rand(2, 3, 64, 64)
    assert compute_lpips(a, a.flip(0), weights_path=path)["lpips"] > 0.0


def test_lpips__missing_weights_name_weights_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torchvision's cache: empty here
    a = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="weights_path"):
        compute_lpips(a, a)
    with pytest.raises(ValueError, match="weights_path"):
        compute_lpips(a, a, weights_path=tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="weights_path"):
        build_lpips("alex", weights_path=tmp_path / "bad.pth")
