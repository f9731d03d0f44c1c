import torch
from torch import nn

from contralord.models.momentum import init_momentum, update_momentum


def _pair():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    momentum = init_momentum(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    return online, momentum


def test_init_momentum__copy_without_grad():
    online, momentum = _pair()
    assert all(not p.requires_grad for p in momentum.parameters())
    assert all(p.requires_grad for p in online.parameters())


def test_update_momentum__m0_copies_online():
    online, momentum = _pair()
    update_momentum(online, momentum, 0.0)
    for a, b in zip(online.parameters(), momentum.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_update_momentum__m1_freezes():
    online, momentum = _pair()
    before = [p.clone() for p in momentum.parameters()]
    update_momentum(online, momentum, 1.0)
    for a, b in zip(before, momentum.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_update_momentum__convex_combination():
    online, momentum = _pair()
    before = [p.clone() for p in momentum.parameters()]
    update_momentum(online, momentum, 0.9)
    for o, b, m in zip(online.parameters(), before, momentum.parameters(), strict=True):
        torch.testing.assert_close(m, 0.9 * b + 0.1 * o)
