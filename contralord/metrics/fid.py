"""Fréchet Inception Distance, the image-quality metric of Sec. 4.2 and Table 3 (after OverLORD).

``frechet_distance`` is the closed form between two Gaussians,
``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, computed as pytorch-fid's
``calculate_frechet_distance``: ``scipy.linalg.sqrtm`` of the product; if that is not finite (a
singular product), ``eps * I`` is added to both covariances and the root recomputed; a complex root
whose diagonal has an imaginary part above 1e-3 raises, otherwise the real part is kept.
``compute_fid`` fits the Gaussians (mean, ``np.cov`` with ddof=1) to given features, and
``fid_from_images`` extracts Inception pool3 features first (see ``inception.py`` for which weights
give numbers comparable with published FIDs).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from contralord.metrics.validation import check_codes


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1: ``(K,)`` mean.
        sigma1: ``(K, K)`` covariance.
        mu2: ``(K,)`` mean.
        sigma2: ``(K, K)`` covariance.
        eps: diagonal offset used only when ``sigma1 @ sigma2`` has no finite square root.

    Returns:
        The squared Fréchet (2-Wasserstein) distance.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    k = mu1.shape[0]
    for name, arr, shape in (("mu2", mu2, (k,)), ("sigma1", sigma1, (k, k)), ("sigma2", sigma2, (k, k))):
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mu1 {mu1.shape}; found {arr.shape}")
    diff = mu1 - mu2  # (K,)
    covmean = linalg.sqrtm(sigma1 @ sigma2)  # (K, K)
    if not np.isfinite(covmean).all():
        offset = np.eye(k) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has an imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(K,)`` and covariance ``(K, K)`` (ddof=1) of ``(N, K)`` features, N >= 2."""
    x = check_codes(features, "features", min_rows=2).astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def compute_fid(features_a, features_b) -> dict[str, float]:
    """FID between two sets of (e.g. Inception pool3) features.

    Args:
        features_a: ``(N, K)``, ``N >= 2``.
        features_b: ``(M, K)``, ``M >= 2``.

    Returns:
        ``{"fid"}``.
    """
    a = check_codes(features_a, "features_a", min_rows=2)
    b = check_codes(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_b must have K={a.shape[1]} columns like features_a; found shape {b.shape}")
    return {"fid": frechet_distance(*feature_statistics(a), *feature_statistics(b))}


def fid_from_images(images_a, images_b, weights_path, batch_size: int = 50, device="cpu") -> dict[str, float]:
    """FID between two image sets through Inception-v3 pool3 features.

    Args:
        images_a: ``(N, C, H, W)`` float tensor in [0, 1], ``C`` in {1, 3}, ``N >= 2``.
        images_b: ``(M, C, H', W')`` idem.
        weights_path: Inception-v3 state dict file (pytorch-fid's ``pt_inception-2015-12-05`` for
            comparable FIDs; see ``InceptionFeatures``).
        batch_size: images per forward pass.
        device: where the network runs.

    Returns:
        ``{"fid"}``.
    """
    from contralord.metrics.inception import InceptionFeatures

    extractor = InceptionFeatures(weights_path, device=device)
    return compute_fid(extractor(images_a, batch_size), extractor(images_b, batch_size))
