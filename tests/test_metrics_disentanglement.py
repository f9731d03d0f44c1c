"""MIG, SAP and DCI: disentanglement_lib's property tests, closed forms and invariances (Sec. 4.2)."""

import numpy as np
import pytest

from contralord.metrics import compute_dci, compute_dci_fast, compute_mig, compute_sap
from contralord.metrics.dci import completeness, disentanglement
from contralord.metrics.mig import histogram_discretize, mutual_info_matrix


def _factors(rng, n, cards):
    return np.stack([rng.integers(0, c, n) for c in cards], axis=1)  # (n, F)


def _binary_entropy(p):
    return -p * np.log(p) - (1 - p) * np.log(1 - p)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------- MIG


def test_histogram_discretize__matches_disentanglement_lib_rule():
    codes = np.array([[0.0, 5.0], [0.5, 5.0], [1.0, 5.0]])  # second column constant
    out = histogram_discretize(codes, num_bins=20)
    # edges 0, 0.05, ..., 1: digitize against edges[:-1] puts the max in bin 20, the min in bin 1
    np.testing.assert_array_equal(out[:, 0], [1, 11, 20])
    assert np.unique(out[:, 1]).size == 1


def test_mig__closed_form_two_binary_factors():
    y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # c1 = y1, c2 = y1 AND y2
    i_and = np.log(2) - 0.75 * _binary_entropy(1 / 3)  # I(y1 AND y2; y_k), by hand
    m = mutual_info_matrix(histogram_discretize(codes), y)
    np.testing.assert_allclose(m, [[np.log(2), 0.0], [i_and, i_and]], atol=1e-12)
    gaps = [(np.log(2) - i_and) / np.log(2), i_and / np.log(2)]
    assert compute_mig(codes, y)["mig"] == pytest.approx(np.mean(gaps), abs=1e-12)
    assert compute_mig(codes, y)["mig"] == pytest.approx(0.5, abs=1e-12)


def test_mig__identity_codes_score_high(rng):
    y = _factors(rng, 3000, (5, 5, 5))
    assert 0.9 <= compute_mig(y.astype(float), y)["mig"] <= 1.0


def test_mig__random_and_constant_codes_score_low(rng):
    y = _factors(rng, 3000, (5, 5, 5))
    assert 0.0 <= compute_mig(rng.normal(size=(3000, 3)), y)["mig"] <= 0.1
    assert compute_mig(np.zeros((3000, 3)), y)["mig"] == 0.0


def test_mig__duplicated_codes_score_zero(rng):
    y = _factors(rng, 3000, (5, 5, 5))
    assert compute_mig(np.hstack([y, y]).astype(float), y)["mig"] == pytest.approx(0.0, abs=1e-12)


def test_mig__invariant_to_column_permutation_and_scaling(rng):
    y = _factors(rng, 2000, (4, 5, 6))
    codes = y + rng.normal(size=(2000, 3))
    ref = compute_mig(codes, y)["mig"]
    assert compute_mig(codes[:, [2, 0, 1]], y)["mig"] == pytest.approx(ref, abs=1e-12)
    assert compute_mig(codes * np.array([3.7, 0.01, 1e3]), y)["mig"] == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------- SAP


def test_sap__continuous_identity_high_random_and_duplicated_low(rng):
    y, y_te = _factors(rng, 3000, (5, 5, 5)), _factors(rng, 3000, (5, 5, 5))
    ident = compute_sap(y.astype(float), y, y_te.astype(float), y_te, continuous_factors=True)["sap"]
    assert 0.9 <= ident <= 1.0
    noise = compute_sap(rng.normal(size=(3000, 3)), y, rng.normal(size=(3000, 3)), y_te, continuous_factors=True)
    assert 0.0 <= noise["sap"] <= 0.2
    dup = np.hstack([y, y]).astype(float)
    assert compute_sap(dup, y, dup, y_te, continuous_factors=True)["sap"] == pytest.approx(0.0, abs=1e-12)


def test_sap__discrete_identity_binary_factors_gap_is_one_minus_chance(rng):
    # own code: accuracy 1; the other (independent) binary code: ~0.5 -> gap ~0.5
    y, y_te = _factors(rng, 1000, (2, 2, 2)), _factors(rng, 1000, (2, 2, 2))
    assert 0.4 <= compute_sap(y.astype(float), y, y_te.astype(float), y_te)["sap"] <= 0.6


def test_sap__discrete_duplicated_codes_score_zero(rng):
    y, y_te = _factors(rng, 500, (2, 3)), _factors(rng, 500, (2, 3))
    x, x_te = y + 0.2 * rng.normal(size=y.shape), y_te + 0.2 * rng.normal(size=y_te.shape)
    assert compute_sap(np.hstack([x, x]), y, np.hstack([x_te, x_te]), y_te)["sap"] == 0.0


def test_sap__constant_code_scores_zero_continuous_and_does_not_crash_discrete(rng):
    y, y_te = _factors(rng, 400, (2, 3)), _factors(rng, 400, (2, 3))
    x = np.hstack([y + 0.1 * rng.normal(size=y.shape), np.ones((400, 1))])
    x_te = np.hstack([y_te + 0.1 * rng.normal(size=y_te.shape), np.ones((400, 1))])
    cont = compute_sap(x, y, x_te, y_te, continuous_factors=True)["sap"]
    assert cont == pytest.approx(compute_sap(x[:, :2], y, x_te[:, :2], y_te, continuous_factors=True)["sap"])
    assert 0.0 <= compute_sap(x, y, x_te, y_te)["sap"] <= 1.0


def test_sap__invariant_to_column_permutation(rng):
    y, y_te = _factors(rng, 500, (2, 3, 4)), _factors(rng, 500, (2, 3, 4))
    x, x_te = y + 0.5 * rng.normal(size=y.shape), y_te + 0.5 * rng.normal(size=y_te.shape)
    p = [2, 0, 1]
    for cont in (False, True):
        ref = compute_sap(x, y, x_te, y_te, continuous_factors=cont)["sap"]
        assert compute_sap(x[:, p], y, x_te[:, p], y_te, continuous_factors=cont)["sap"] == pytest.approx(ref)


# ---------------------------------------------------------------- DCI: closed forms (disentanglement_lib's)


def test_dci_scores__closed_forms():
    diag = np.diag(5.0 * np.ones(5))
    assert disentanglement(diag) == pytest.approx(1.0) and completeness(diag) == pytest.approx(1.0)
    empty_code = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert disentanglement(empty_code) == pytest.approx(1.0) and completeness(empty_code) == pytest.approx(1.0)
    assert disentanglement(np.zeros((10, 10))) == pytest.approx(0.0)
    assert completeness(np.zeros((10, 10))) == pytest.approx(0.0, abs=1e-7)
    redundant = np.vstack([diag, diag])
    assert disentanglement(redundant) == pytest.approx(1.0)
    assert completeness(redundant) == pytest.approx(1 - np.log(2) / np.log(10))
    two_factors = np.hstack([diag, diag])
    assert disentanglement(two_factors) == pytest.approx(1 - np.log(2) / np.log(10))
    assert completeness(two_factors) == pytest.approx(1.0)


# ---------------------------------------------------------------- DCI: fitted


@pytest.fixture
def dci_data(rng):
    return _factors(rng, 300, (3, 3, 3)), _factors(rng, 150, (3, 3, 3))


def test_dci__identity_codes_score_high(dci_data):
    y, y_te = dci_data
    s = compute_dci(y.astype(float), y, y_te.astype(float), y_te, random_state=0, n_jobs=1)
    assert 0.9 <= s["disentanglement"] <= 1.0 and 0.9 <= s["completeness"] <= 1.0
    assert s["informativeness_test"] == 1.0


def test_dci__randomly_permuted_codes_score_low(dci_data, rng):
    y, y_te = dci_data
    perm = lambda a: np.stack([rng.permutation(row) for row in a.astype(float)])
    s = compute_dci(perm(y), y, perm(y_te), y_te, random_state=0, n_jobs=1)
    assert 0.0 <= s["disentanglement"] <= 0.2 and 0.0 <= s["completeness"] <= 0.2


def test_dci__duplicated_codes_halve_completeness(dci_data):
    y, y_te = dci_data
    dup = lambda a: np.hstack([a, a]).astype(float)
    s = compute_dci(dup(y), y, dup(y_te), y_te, random_state=0, n_jobs=1)
    assert 0.9 <= s["disentanglement"] <= 1.0
    target = 1 - np.log(2) / np.log(6)
    assert target - 0.1 <= s["completeness"] <= target + 0.1


def test_dci__parallel_equals_sequential_exactly(dci_data, rng):
    y, y_te = dci_data
    x, x_te = y + 0.4 * rng.normal(size=y.shape), y_te + 0.4 * rng.normal(size=y_te.shape)
    seq = compute_dci(x, y, x_te, y_te, random_state=3, n_jobs=1)
    assert compute_dci(x, y, x_te, y_te, random_state=3, n_jobs=2) == seq


def test_dci__column_permutation_changes_disentanglement_only_by_tie_breaking(dci_data, rng):
    # GBT visits features in a seeded random order; permuting columns can resolve near-ties differently.
    y, y_te = dci_data
    x = np.hstack([y + 0.3 * rng.normal(size=y.shape), rng.normal(size=(300, 1))])
    x_te = np.hstack([y_te + 0.3 * rng.normal(size=y_te.shape), rng.normal(size=(150, 1))])
    p = [3, 0, 2, 1]
    ref = compute_dci(x, y, x_te, y_te, random_state=0, n_jobs=1)["disentanglement"]
    assert compute_dci(x[:, p], y, x_te[:, p], y_te, random_state=0, n_jobs=1)["disentanglement"] == pytest.approx(
        ref, abs=0.01
    )


def test_dci__constant_code_column_is_valid(dci_data):
    y, y_te = dci_data
    x, x_te = np.hstack([y, np.zeros((300, 1))]), np.hstack([y_te, np.zeros((150, 1))])
    s = compute_dci(x.astype(float), y, x_te.astype(float), y_te, random_state=0, n_jobs=1)
    assert s["disentanglement"] >= 0.9


def test_dci_fast__prefixed_keys_and_identity_high(dci_data):
    y, y_te = dci_data
    s = compute_dci_fast(y.astype(float), y, y_te.astype(float), y_te, random_state=0, n_jobs=1)
    assert set(s) == {f"dci_fast_{k}" for k in ("disentanglement", "completeness", "informativeness_train",
                                                "informativeness_test")}
    assert s["dci_fast_disentanglement"] >= 0.9 and s["dci_fast_completeness"] >= 0.9
