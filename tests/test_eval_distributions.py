"""Fréchet distance and Inception Score against independent references."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from videopoet.eval.metrics import (
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    inception_score,
)


def _scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The pytorch-fid / TTUR reference formula with scipy.linalg.sqrtm, all float64."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.asarray(scipy.linalg.sqrtm(s1 @ s2)).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n,d", [(500, 16), (300, 64), (2000, 128)])
def test_frechet_matches_scipy_sqrtm_reference(n, d):
    rng = np.random.default_rng(d)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    x = rng.normal(size=(n, d)) @ mix
    y = rng.normal(size=(n, d)) @ (mix + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d)) + 0.5
    ours = frechet_distance(x.astype(np.float32), y.astype(np.float32))
    ref = _scipy_frechet(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
    assert ours == pytest.approx(ref, rel=1e-7, abs=1e-8)


def test_frechet_of_closed_form_gaussians():
    # N(0, I) vs N(m, 4 I) in D dims: |m|^2 + D (1 + 4 - 2*2) = |m|^2 + D.
    d = 8
    a = gaussian_stats(np.random.default_rng(0).normal(size=(10, d)))
    a = a._replace(mean=np.zeros(d), cov=np.eye(d))
    b = a._replace(mean=np.full(d, 0.5), cov=4 * np.eye(d))
    assert frechet_distance_from_stats(a, b) == pytest.approx(d * 0.25 + d, rel=1e-12)


def test_frechet_identical_sets_is_zero_and_singular_covariance_is_finite():
    x = np.random.default_rng(1).normal(size=(20, 64))  # N < D: singular covariance
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    y = x + 1.0
    assert frechet_distance(x, y) == pytest.approx(64.0, rel=1e-6)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="sizes differ"):
        frechet_distance(np.random.rand(5, 4), np.random.rand(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 4), np.nan), np.random.rand(5, 4))


def test_inception_score_extremes_and_reference():
    c = 10
    confident_diverse = np.eye(c)[np.arange(1000) % c]
    assert inception_score(confident_diverse, splits=10).mean == pytest.approx(c, rel=1e-9)
    collapsed = np.tile(np.eye(c)[:1], (1000, 1))
    assert inception_score(collapsed, splits=10).mean == pytest.approx(1.0)
    uniform = np.full((100, c), 1.0 / c)
    assert inception_score(uniform, splits=1).mean == pytest.approx(1.0)
    # Against a direct scipy-entropy reference on random softmax rows.
    logits = np.random.default_rng(3).normal(size=(600, c)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = []
    for part in np.array_split(p, 3):
        py = part.mean(0)
        ref.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    ours = inception_score(p, splits=3)
    assert ours.mean == pytest.approx(np.mean(ref), rel=1e-10)
    assert ours.std == pytest.approx(np.std(ref), rel=1e-8)
    with pytest.raises(ValueError, match="softmax"):
        inception_score(logits, splits=3)
