import math

import pytest
import torch
import torch.nn.functional as F

from contralord.losses import code_penalty_loss, info_nce_loss, nt_xent_loss, supervision_loss


def _reference_info_nce(anchor, positive, negatives, tau):
    """Eq. 4 written literally, one sample at a time."""
    total = 0.0
    for a, p in zip(anchor, positive, strict=True):
        a, p = a / a.norm(), p / p.norm()
        num = math.exp(float(a @ p) / tau)
        den = num + sum(math.exp(float(a @ (n / n.norm())) / tau) for n in negatives)
        total += -math.log(num / den)
    return total / len(anchor)


@pytest.mark.parametrize("batch, dim, k, tau", [(1, 4, 3, 0.07), (5, 8, 17, 0.2), (8, 16, 64, 1.0)])
def test_info_nce__equals_reference(batch, dim, k, tau):
    g = torch.Generator().manual_seed(batch * k)
    a, p, n = (torch.randn(s, dim, generator=g, dtype=torch.float64) for s in (batch, batch, k))
    assert float(info_nce_loss(a, p, n, tau)) == pytest.approx(_reference_info_nce(a, p, n, tau), rel=1e-9)


def test_info_nce__all_orthogonal_is_log_k_plus_1():
    # anchor orthogonal to the positive and to every negative: all logits 0 -> loss = log(K + 1)
    k = 10
    basis = torch.eye(k + 2)
    loss = info_nce_loss(basis[:1], basis[1:2], basis[2:], temperature=0.07)
    assert float(loss) == pytest.approx(math.log(k + 1), rel=1e-6)


def test_info_nce__aligned_positive_orthogonal_queue_closed_form():
    # a == p, queue orthogonal: -log(e^{1/tau} / (e^{1/tau} + K)) = log(1 + K e^{-1/tau})
    k, tau = 7, 0.5
    basis = torch.eye(k + 1, dtype=torch.float64)
    loss = info_nce_loss(basis[:1] * 3, basis[:1], basis[1:], tau)
    assert float(loss) == pytest.approx(math.log1p(k * math.exp(-1 / tau)), rel=1e-12)


def test_info_nce__no_gradient_into_positive_or_queue():
    a = torch.randn(4, 8, requires_grad=True)
    p = torch.randn(4, 8, requires_grad=True)
    n = torch.randn(16, 8, requires_grad=True)
    info_nce_loss(a, p, n, 0.1).backward()
    assert a.grad is not None and p.grad is None and n.grad is None


def test_info_nce__decreases_over_sgd_steps():
    torch.manual_seed(0)
    a = torch.randn(16, 8, requires_grad=True)
    p, n = torch.randn(16, 8), torch.randn(64, 8)
    opt = torch.optim.SGD([a], lr=20.0)
    losses = []
    for _ in range(20):
        loss = info_nce_loss(a, p, n, 0.2)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def _reference_nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    b, total = len(z1), 0.0
    for i in range(2 * b):
        partner = (i + b) % (2 * b)
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * b) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[partner]) / tau) / den)
    return total / (2 * b)


@pytest.mark.parametrize("batch, tau", [(2, 0.1), (6, 0.5)])
def test_nt_xent__equals_reference(batch, tau):
    g = torch.Generator().manual_seed(batch)
    z1, z2 = (torch.randn(batch, 5, generator=g, dtype=torch.float64) for _ in range(2))
    assert float(nt_xent_loss(z1, z2, tau)) == pytest.approx(_reference_nt_xent(z1, z2, tau), rel=1e-9)


def test_supervision_loss__closed_form():
    pred = (torch.ones(2, 3), torch.zeros(2, 2), torch.full((2, 1), 2.0))
    target = (torch.zeros(2, 3), torch.ones(2, 2), torch.zeros(2, 1))
    # per image, summed over dims (Eq. 3 as printed): 3*1 + 2*1 + 1*4 = 9
    assert float(supervision_loss(pred, target, "sum")) == pytest.approx(9.0)
    # mean over each head's dims (LORD's convention, the default): 1 + 1 + 4 = 6
    assert float(supervision_loss(pred, target)) == pytest.approx(6.0)
    # an absent head (no class code) adds nothing
    empty = (torch.zeros(2, 0), *pred[1:]), (torch.zeros(2, 0), *target[1:])
    assert float(supervision_loss(*empty, "sum")) == pytest.approx(6.0)


def test_code_penalty__closed_form():
    c, r = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0]])
    assert float(code_penalty_loss(c, r)) == pytest.approx(26.0)


def test_bce_reconstruction__the_closed_form_on_binary_pixels():
    from contralord.losses import bce_reconstruction_loss

    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])  # (1, 1, 2, 2)
    x_hat = torch.tensor([[[[0.2, 0.7], [0.9, 0.5]]]])
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.9) + math.log(0.5)) / 4
    assert float(bce_reconstruction_loss(x_hat, x)) == pytest.approx(expected, rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 inside autocast too
        assert bce_reconstruction_loss(x_hat, x).dtype == torch.float32


def test_recon_loss_bce__stage1_trains_with_it(tmp_path, tiny_overrides):
    from contralord.config import ContraLordConfig
    from contralord.setup import Setup, build_data
    from contralord.stage1.latent_stage import train_latent

    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"latent.recon_loss": "bce"})
    result = train_latent(Setup.of(cfg, build_data(cfg)), tmp_path)
    assert 0 < result.metrics["latent/train/recon"] < 1  # a mean BCE near ln 2 at the start, below it after


def test_recon_loss_bce__refused_with_bf16_naming_the_key():
    from contralord.config import ConfigError, ContraLordConfig

    with pytest.raises(ConfigError, match=r"latent.recon_loss: expected mse or perceptual with run.precision=bf16"):
        ContraLordConfig.from_overrides({"latent.recon_loss": "bce", "run.precision": "bf16"})
