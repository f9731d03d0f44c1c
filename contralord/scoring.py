"""The paper's protocol on codes (ContraLORD Sec. 4.3, "with 100 labels", after Gabbay, Cohen & Hoshen 2021 and
avivga/zerodim): which images are scored, and how codes are scored against the labelled factors. No model and no
side effect: the evaluation scores a trained encoder's codes with these functions, stage 1 its own codes g^c (the
ceiling of a head that regresses them).

The scored images are up to ``eval.num_train + eval.num_test`` training images in a seeded order, split 80/20 with
``random_state=1337`` as zerodim does: DCI and SAP fit on the 80% and score on the 20%, MIG on the 80%.
``residual_leakage`` is the held-out accuracy of a logistic regression from h_r to each labelled factor, beside its
chance level (the majority value's share).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from contralord import metrics
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.setup import Setup

SPLIT_TEST, SPLIT_SEED = 0.2, 1337  # zerodim's train_test_split of the scored images


def scored_order(cfg: ContraLordConfig, num_images: int, size: int) -> torch.Tensor:
    """(size,) the positions of the scored images: a permutation of ``num_images`` seeded by ``run.seed``."""
    return torch.randperm(num_images, generator=torch.Generator().manual_seed(cfg.run.seed + 2))[:size]


def partial_labels_order(cfg: ContraLordConfig, train: ImageFactorData) -> torch.Tensor:
    """The training images the partial-labels protocol scores (``eval.num_train + eval.num_test`` at most)."""
    return scored_order(cfg, len(train), min(len(train), cfg.eval.num_train + cfg.eval.num_test))


def labelled_values(setup: Setup, order: torch.Tensor) -> np.ndarray:
    """(N, F_l) values of the labelled factors of the training images ``order``."""
    return setup.data.factors[order][:, list(setup.labelled.columns)].numpy()


def score_labelled_codes(cfg: ContraLordConfig, scored: np.ndarray, residual: np.ndarray, values: np.ndarray,
                         names: tuple[str, ...], code_names: list[str]) -> dict[str, Any]:
    """The paper's protocol on codes of training images: ``scored`` (N, D) against the labelled factors'
    ``values`` (N, F_l), and the leakage of ``residual`` (N, Dr). Also the DCI importance matrix R (D, F_l),
    nested under ``dci_importance`` and flat as ``dci_importance/<code>/<factor>`` (a float per cell, so a
    tracker logs it): which code dimension carries which factor, which a single D hides."""
    fit, test = train_test_split(np.arange(len(scored)), test_size=SPLIT_TEST, random_state=SPLIT_SEED)
    result: dict[str, Any] = {"factors": list(names), "num_metric_train": float(len(fit)),
                              "num_metric_test": float(len(test))}
    result |= metrics.compute_mig(scored[fit], values[fit])
    result |= metrics.compute_sap(scored[fit], values[fit], scored[test], values[test])
    result |= metrics.compute_dci(scored[fit], values[fit], scored[test], values[test], random_state=cfg.run.seed,
                                  n_jobs=dci_jobs(cfg, values.shape[1]), with_importance=True)
    importance = result.pop("importance")  # (D, F_l) nested lists
    result["dci_importance"] = {"codes": list(code_names), "factors": list(names), "matrix": importance}
    result |= {f"dci_importance/{code}/{factor}": float(importance[i][j])
               for i, code in enumerate(code_names) for j, factor in enumerate(names)}
    result["within_combination_variance"] = within_combination_variance(scored, values)
    return result | _residual_leakage(residual, values, names, fit, test)


def within_combination_variance(codes: np.ndarray, values: np.ndarray) -> float:
    """The share of the codes' total variance (N, D) left within the groups of images that share every
    labelled factor's value (``values`` (N, F_l)): 0 when the code is a function of the labelled factors,
    1 when it ignores them. An instance-contrastive term that spreads same-label images apart raises it."""
    total = float(((codes - codes.mean(0)) ** 2).sum())
    if total == 0.0:
        return 0.0
    _, group = np.unique(values, axis=0, return_inverse=True)
    group = group.reshape(-1)
    sums = np.zeros((group.max() + 1, codes.shape[1]))
    np.add.at(sums, group, codes)
    means = sums / np.bincount(group)[:, None]  # (G, D)
    return float(((codes - means[group]) ** 2).sum()) / total


def _residual_leakage(residual: np.ndarray, values: np.ndarray, names: tuple[str, ...], fit: np.ndarray,
                      test: np.ndarray) -> dict[str, float]:
    """Held-out accuracy of a logistic regression h_r -> each labelled factor, and its chance level."""
    result, accuracies, chances = {}, [], []
    for j, name in enumerate(names):
        y_fit, y_test = values[fit, j], values[test, j]
        if len(np.unique(y_fit)) < 2:
            continue  # a factor constant in the fitted images: nothing to leak
        accuracy = metrics.compute_linear_probe(residual[fit], y_fit, residual[test], y_test)["top1"]
        chance = float(np.bincount(y_test).max() / len(y_test))
        result[f"residual_leakage/{name}"], result[f"residual_leakage_chance/{name}"] = accuracy, chance
        accuracies.append(accuracy), chances.append(chance)
    if accuracies:
        result["residual_leakage"] = float(np.mean(accuracies))
        result["residual_leakage_chance"] = float(np.mean(chances))
    return result


def dci_jobs(cfg: ContraLordConfig, num_factors: int) -> int:
    """``eval.dci_jobs``, or (0) one parallel DCI fit per factor and per CPU this process was given:
    torch's intra-op threads (``run.threads``, a sweep's CPUs per trial), at most the cores. A 1-CPU
    sweep trial then fits its factors in turn; more fit in threads (``metrics.dci``). Every ``n_jobs`` gives
    the same numbers (``metrics.dci``)."""
    return cfg.eval.dci_jobs or max(1, min(num_factors, torch.get_num_threads(), os.cpu_count() or 1))
