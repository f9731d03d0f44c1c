import torch
import torch.nn.functional as F

from contralord.models.queue import FeatureQueue


def _unit(n, dim=4, start=0):
    keys = torch.zeros(n, dim)
    keys[:, 0] = torch.arange(start, start + n, dtype=torch.float) + 1  # key i points along e0 with marker
    keys[:, 1] = 1.0
    return keys


def test_enqueue__fifo_order():
    q = FeatureQueue(6, 4)
    q.enqueue(_unit(2, start=0))
    q.enqueue(_unit(2, start=2))
    assert int(q.ptr) == 4
    torch.testing.assert_close(q.features[:4], F.normalize(_unit(4), dim=1))


def test_enqueue__wraps_around_when_k_not_multiple_of_batch():
    q = FeatureQueue(5, 4)
    for step in range(3):  # 3 batches of 2 into K=5: the 6th key overwrites slot 0
        q.enqueue(_unit(2, start=2 * step))
    expected = F.normalize(_unit(6), dim=1)
    torch.testing.assert_close(q.features[0], expected[5])
    torch.testing.assert_close(q.features[1:5], expected[1:5])
    assert int(q.ptr) == 1


def test_enqueue__more_keys_than_k_keeps_newest_in_fifo_slots():
    q = FeatureQueue(3, 4)
    q.enqueue(_unit(1, start=0))  # ptr 1
    q.enqueue(_unit(5, start=1))  # keys 1..5: sequential writes land 1->1,2->2,3->0,4->1,5->2
    expected = F.normalize(_unit(6), dim=1)
    torch.testing.assert_close(q.features, expected[[3, 4, 5]])
    assert int(q.ptr) == (1 + 5) % 3


def test_queue__state_dict_round_trip():
    q = FeatureQueue(7, 4, generator=torch.Generator().manual_seed(0))
    q.enqueue(_unit(3))
    r = FeatureQueue(7, 4, generator=torch.Generator().manual_seed(1))
    r.load_state_dict(q.state_dict())
    torch.testing.assert_close(r.features, q.features)
    assert int(r.ptr) == 3


def test_queue__initial_keys_unit_norm_and_no_grad():
    q = FeatureQueue(16, 8)
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(16))
    keys = torch.randn(4, 8, requires_grad=True)
    q.enqueue(keys * 2)
    assert not q.negatives().requires_grad and not q.features.requires_grad
