"""Metric functions: small, pure, tested against references. Each takes arrays/tensors and returns numbers.

Sections: video reconstruction (PSNR, SSIM, codebook usage), audio (SI-SNR, mel distance), distribution
metrics (Fréchet distance, Inception Score).
"""

from __future__ import annotations

import typing

import numpy as np

# ======================================================================== video reconstruction

# ======================================================================== audio

# ======================================================================== distributions
# Fréchet distance between Gaussians fitted to two feature sets (FVD, FAD, judge-feature FD) and the
# Inception Score. Everything is computed in float64: covariance products of 400–4096-d features lose
# several digits in float32, enough to move FVD by whole units.


class GaussianStats(typing.NamedTuple):
    mean: np.ndarray  # float64 (D,)
    cov: np.ndarray  # float64 (D, D), unbiased (ddof=1)
    count: int  # number of feature vectors the statistics came from


def gaussian_stats(features) -> GaussianStats:
    """Mean and unbiased covariance (float64) of ``features`` shaped (N, D) with N ≥ 2."""
    x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; check the network producing them")
    return GaussianStats(
        x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1]), x.shape[0]
    )


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues → 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½) in float64.

    tr((Σa Σb)^½) equals the sum of square roots of the eigenvalues of the symmetric PSD matrix
    Σa^½ Σb Σa^½ (same spectrum as Σa Σb), which is stable where scipy's sqrtm of the non-symmetric
    product needs an eps fix-up for singular covariances (N < D is common for small sample counts).
    """
    mu_a, mu_b = np.asarray(a.mean, np.float64), np.asarray(b.mean, np.float64)
    cov_a, cov_b = np.asarray(a.cov, np.float64), np.asarray(b.cov, np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape} vs {mu_b.shape}; use the same feature network")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets, each (N, D)."""
    return frechet_distance_from_stats(gaussian_stats(features_a), gaussian_stats(features_b))


class InceptionScore(typing.NamedTuple):
    mean: float  # mean over splits of exp(E_x KL(p(y|x) ‖ p(y)))
    std: float  # standard deviation over splits (0 with one split)


def inception_score(probs, *, splits: int = 10) -> InceptionScore:
    """Inception Score from class probabilities (N, C) (rows sum to 1), the usual ``splits``-fold protocol.

    Each split of consecutive rows gets its own marginal p(y); the score is exp of the mean KL divergence
    between p(y|x) and that marginal. Ranges from 1 (every sample alike or maximally unsure) to C.
    """
    p = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, classes), got shape {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be non-negative rows that sum to 1 (apply softmax to logits first)")
    if not 1 <= splits <= p.shape[0]:
        raise ValueError(f"splits must be between 1 and the number of samples ({p.shape[0]}), got {splits}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)))
