"""Smoothness of embeddings, the paper's Eq. 7 (Sec. 3.4), reported in Tables 2 and 4-6.

    smoothness = E_{(g_i, g_j) ~ p_c}[exp(-t ||g_i - g_j||^2)] + E_{(g_i, g_j) ~ p_r}[exp(-t ||g_i - g_j||^2)]

with ``p_c`` / ``p_r`` the content / residual embeddings "on the hyper-sphere" and ``t = 2`` (Wang &
Isola, 2020). It is their uniformity potential without the log. Each expectation is the exact mean
over all ``N(N-1)/2`` pairs ``i < j``. Rows are L2-normalised first by default (the paper's
hyper-sphere), with the switch exposed; both halves are returned separately.

**Which way is better.** The value is the mean Gaussian potential: it is 1 when every code is the same point
and falls as the codes spread over the sphere, so a *higher* smoothness means codes more *concentrated*. The
paper marks the column "↑" while its text asks for uniformly spread embeddings (Wang & Isola's uniformity, of
which this is the exponential): read literally the two contradict each other, and a higher value goes with
collapsed codes (our D correlates with it negatively). The rows are also not centred in Eq. 7, so low-dimensional
codes far from the origin (a 3-dimensional h_c regressing stage-1 tables) read as concentrated whatever their
spread. The evaluation therefore reports beside the literal formula (``smoothness``): the same on centred codes
(``smoothness_centred``; lower = more spread) and Wang & Isola's uniformity, the log of it, on the centred h_c
(``uniformity_content``) and on the projection InfoNCE acts on (``uniformity_projection``); lower is more uniform.

Memory stays bounded for large ``N``: the pairs are visited in ``chunk_size x chunk_size`` tiles of
rows ``[s, s+c)`` against later rows, so at most one float64 tile (``8 chunk_size^2`` bytes,
134 MB for 4096) is alive, never the ``N x N`` matrix; sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np

from contralord.metrics.validation import check_codes


def _tile_sum(a, sq_a, b, sq_b, t: float, diagonal: bool) -> float:
    """Sum of ``exp(-t ||a_i - b_j||^2)`` over a tile; over ``i < j`` only when ``a is b`` (``diagonal``).

    ``a (n_a, D)``, ``b (n_b, D)``, squared norms ``(n_a,)``, ``(n_b,)``. The tile is freed on return,
    so a single ``(n_a, n_b)`` buffer is ever alive.
    """
    g = a @ b.T  # (n_a, n_b); in place from here on
    g *= 2.0
    g -= sq_a[:, None]
    g -= sq_b[None, :]  # -||a_i - b_j||^2
    np.minimum(g, 0.0, out=g)  # rounding can make a tiny distance negative
    g *= t
    np.exp(g, out=g)
    if diagonal:  # the tile is symmetric: pairs above its diagonal are half the off-diagonal sum
        return (float(g.sum()) - float(np.trace(g))) / 2.0
    return float(g.sum())


def mean_pair_potential(x: np.ndarray, t: float = 2.0, chunk_size: int = 4096) -> float:
    """Exact mean over pairs ``i < j`` of ``exp(-t ||x_i - x_j||^2)``, in tiles.

    Args:
        x: ``(N, D)`` float64 embeddings, ``N >= 2``.
        t: the kernel's positive scale.
        chunk_size: tile side (rows); memory is ``O(chunk_size^2)``.

    Returns:
        The mean pairwise Gaussian potential, in ``(0, 1]``.
    """
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)  # (N,)
    total = 0.0
    for s in range(0, n, chunk_size):
        a, sq_a = x[s : s + chunk_size], sq[s : s + chunk_size]
        for u in range(s, n, chunk_size):
            total += _tile_sum(a, sq_a, x[u : u + chunk_size], sq[u : u + chunk_size], t, diagonal=u == s)
    return total / (n * (n - 1) / 2.0)


def _prepare(emb, name: str, normalize: bool, centre: bool = False) -> np.ndarray:
    """Validates one half, subtracts its mean row (``centre``) and L2-normalises its rows (``x / max(||x||,
    1e-12)``, as ``F.normalize``; a row at the mean stays 0)."""
    x = check_codes(emb, name, min_rows=2).astype(np.float64)  # (N, D)
    if centre:
        x -= x.mean(axis=0, keepdims=True)
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def uniformity(emb, name: str, t: float = 2.0, centre: bool = True, chunk_size: int = 4096) -> float:
    """Wang & Isola's (2020) uniformity: log of the mean pairwise Gaussian potential of the rows on the unit
    sphere (centred first by default, so codes offset from the origin are not read as concentrated).

    Lower is more uniform: 0 when every row is the same point; on the unit circle, rows spread evenly tend to
    log(exp(-2t) I_0(2t)) (-1.575 at t = 2)."""
    return float(np.log(mean_pair_potential(_prepare(emb, name, True, centre), float(t), int(chunk_size))))


def compute_smoothness(
    content, residual, t: float = 2.0, normalize: bool = True, chunk_size: int = 4096, centre: bool = False
) -> dict[str, float]:
    """The paper's Eq. 7: mean pairwise Gaussian potential of content plus that of residual embeddings.

    Args:
        content: ``(N, D_c)`` content embeddings ``g^c``, ``N >= 2``.
        residual: ``(N', D_r)`` residual embeddings ``g^r``, ``N' >= 2`` (usually ``N' = N``).
        t: the positive factor ``t`` of Eq. 7 (the paper uses 2).
        normalize: L2-normalise rows first (embeddings on the hyper-sphere).
        centre: subtract each half's mean row before normalising (the value then does not depend on where the
            codes sit relative to the origin, e.g. the offset of a stage-1 table).
        chunk_size: tile side; peak memory ~ ``8 chunk_size^2`` bytes per half.

    Returns:
        ``{"smoothness": content + residual, "smoothness_content", "smoothness_residual"}``; each half is
        in ``(0, 1]``, so the sum is in ``(0, 2]``.
    """
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"t must be a positive finite number; found {t!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; found {chunk_size!r}")
    halves = {}
    for name, emb in (("content", content), ("residual", residual)):
        halves[name] = mean_pair_potential(_prepare(emb, name, normalize, centre), float(t), int(chunk_size))
    return {
        "smoothness": halves["content"] + halves["residual"],
        "smoothness_content": halves["content"],
        "smoothness_residual": halves["residual"],
    }
