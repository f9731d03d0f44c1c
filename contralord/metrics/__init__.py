"""Evaluation metrics of the paper: Eq. 7 smoothness (Sec. 3.4) and the metrics of Sec. 4.2.

Each metric is a pure function returning ``dict[str, float]``. The disentanglement metrics (DCI,
SAP, MIG) follow google-research/disentanglement_lib to the detail (see each module), so that our
Table 2 numbers compare with published ones.

Layout: codes are ``(N, D)`` floats and factors ``(N, F)`` integer class indices, one ROW per sample.
This is the TRANSPOSE of disentanglement_lib's ``(num_codes, num_points)`` arrays: pass
``mus.T, ys.T`` when porting code from there.

- ``compute_mig(codes, factors, num_bins=20)`` -> ``{"mig"}``
- ``compute_sap(codes_train, factors_train, codes_test, factors_test, continuous_factors=False)`` -> ``{"sap"}``
- ``compute_dci(codes_train, factors_train, codes_test, factors_test, random_state=None, n_jobs=None)``
  -> ``{"disentanglement", "completeness", "informativeness_train", "informativeness_test"}``
- ``compute_dci_fast(...)`` -> the same with a ``dci_fast_`` prefix (HGB + permutation importance;
  not comparable with published DCI)
- ``compute_smoothness(content, residual, t=2.0, normalize=True, chunk_size=4096)``
  -> ``{"smoothness", "smoothness_content", "smoothness_residual"}`` (``centre=True``: the centred reading)
- ``uniformity(codes, name, t=2.0, centre=True)``: Wang & Isola's uniformity, the log mean potential
- ``compute_linear_probe(train_features, train_labels, test_features, test_labels)`` -> ``{"top1", "top5"}``
- ``frechet_distance(mu1, sigma1, mu2, sigma2)`` -> float; ``compute_fid(features_a, features_b)`` -> ``{"fid"}``;
  ``fid_from_images(images_a, images_b, weights_path)`` through ``InceptionFeatures``
- ``compute_lpips(images_a, images_b, net="alex", weights_path=None)`` -> ``{"lpips"}``

Nothing here downloads weights: FID and LPIPS take user-supplied files. The torch-based names
(``InceptionFeatures``, ``build_lpips``, ``compute_lpips``) are imported on first use, so that the
numpy metrics import without torch (a script that scores saved codes needs none). The benchmark
lives in ``contralord.metrics.bench`` (not imported here).
"""

import importlib

from contralord.metrics.dci import compute_dci
from contralord.metrics.dci_fast import compute_dci_fast
from contralord.metrics.fid import compute_fid, fid_from_images, frechet_distance
from contralord.metrics.linear_probe import compute_linear_probe, topk_accuracy
from contralord.metrics.mig import compute_mig
from contralord.metrics.sap import compute_sap
from contralord.metrics.smoothness import compute_smoothness, uniformity

__all__ = [
    "InceptionFeatures",
    "build_lpips",
    "compute_dci",
    "compute_dci_fast",
    "compute_fid",
    "compute_linear_probe",
    "topk_accuracy",
    "compute_lpips",
    "compute_mig",
    "compute_sap",
    "compute_smoothness",
    "uniformity",
    "fid_from_images",
    "frechet_distance",
]

_LAZY = {"InceptionFeatures": "inception", "build_lpips": "perceptual", "compute_lpips": "perceptual"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"contralord.metrics.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
