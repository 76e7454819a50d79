"""Metric functions: small, pure, tested against references. Each takes arrays/tensors and returns numbers.

Sections: video reconstruction (PSNR, SSIM, codebook usage), audio (SI-SNR, mel distance), distribution
metrics (Fréchet distance, Inception Score).
"""

from __future__ import annotations

import typing

import numpy as np

# ======================================================================== video reconstruction
# Videos are float tensors (B, C, T, H, W) in [-1, 1] (data range 2). PSNR and SSIM are computed per frame
# and averaged over the frames of each clip, the usual convention for video codecs; both return (B,).


def psnr(recon, target, *, data_range: float = 2.0, mask=None, max_db: float | None = 100.0):
    """Per-clip PSNR (dB) of videos (B, C, T, H, W) → float64 (B,): the mean over frames of
    10·log10(range² / MSE_frame), the MSE taken over channels and pixels (only where ``mask``, bool (H, W),
    is True). A frame with MSE 0 counts as ``max_db`` (+inf when None); an empty mask gives NaN."""
    import torch

    _check_pair(recon, target)
    diff2 = (recon.double() - target.double()).pow(2)
    if mask is None:
        mse = diff2.mean(dim=(1, 3, 4))  # (B, T)
    else:
        mse = diff2[..., torch.as_tensor(mask, dtype=torch.bool, device=diff2.device)].mean(dim=(1, 3))
    if max_db is None:
        return (10 * torch.log10(data_range**2 / mse)).mean(dim=1)
    value = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
    return value.clamp(max=max_db).mean(dim=1)


def frames_psnr(recon, target, *, mask=None) -> float:
    """``psnr`` of uint8 frames (T, H, W, 3) or one image (H, W, 3) (range 255, per frame, then the mean),
    optionally only where ``mask`` (H, W) is True; an identical frame counts as ``psnr``'s 100 dB cap (so
    one exact clip cannot make a mean over clips infinite), an empty mask gives NaN."""
    import torch

    a, b = np.asarray(recon), np.asarray(target)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3) or an image (H, W, 3), got shape {a.shape}")

    def clip(x):  # (T, H, W, 3) or (H, W, 3) → (1, 3, T, H, W)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        return (x[None] if x.ndim == 3 else x).permute(3, 0, 1, 2)[None]

    return float(psnr(clip(a), clip(b), data_range=255.0, mask=mask)[0])


def _gaussian_window(size: int, sigma: float, device):
    import torch

    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(recon, target, *, data_range: float = 2.0, window: int = 11, sigma: float = 1.5):
    """Per-clip SSIM (Wang et al. 2004: Gaussian 11×11 σ=1.5 window, K1=0.01, K2=0.03, valid region),
    per frame and channel, averaged over channels, pixels and frames → (B,)."""
    import torch.nn.functional as F

    _check_pair(recon, target)
    b, c, t, h, w = recon.shape
    if h < window or w < window:
        raise ValueError(f"SSIM needs frames at least {window}×{window}, got {w}×{h}")
    x = recon.double().permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)  # every (frame, channel) alone
    y = target.double().permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
    g = _gaussian_window(window, sigma, recon.device)

    def blur(z):  # separable Gaussian, valid padding
        z = F.conv2d(z, g.view(1, 1, 1, -1))
        return F.conv2d(z, g.view(1, 1, -1, 1))

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return smap.mean(dim=(1, 2, 3)).view(b, t * c).mean(dim=1)


def _check_pair(recon, target) -> None:
    if recon.shape != target.shape or recon.ndim != 5:
        raise ValueError(
            f"expected two videos of equal shape (B, C, T, H, W), got {tuple(recon.shape)} and "
            f"{tuple(target.shape)}"
        )


class CodebookUsage(typing.NamedTuple):
    used_fraction: float  # codes used at least once / codebook size
    used: int  # number of distinct codes used
    entropy_bits: float  # entropy of the empirical code distribution, bits (max log2(codebook size))
    perplexity: float  # 2^entropy_bits: the effective number of equally used codes
    tokens: int  # tokens counted


class CodebookCounter:
    """Accumulates code counts over many batches (for usage over a whole evaluation set)."""

    def __init__(self, codebook_size: int):
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = codebook_size
        self.counts = np.zeros(codebook_size, dtype=np.int64)

    def update(self, indices) -> None:
        flat = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.codebook_size):
            raise ValueError(f"indices outside [0, {self.codebook_size})")
        self.counts += np.bincount(flat.astype(np.int64), minlength=self.codebook_size)

    def result(self) -> CodebookUsage:
        total = int(self.counts.sum())
        used = int((self.counts > 0).sum())
        p = self.counts[self.counts > 0] / max(total, 1)
        entropy = float(-(p * np.log2(p)).sum()) if total else 0.0
        return CodebookUsage(used / self.codebook_size, used, entropy, float(2.0**entropy), total)


def codebook_usage(indices, codebook_size: int) -> CodebookUsage:
    """Usage of a codebook by the token ids in ``indices`` (any shape)."""
    counter = CodebookCounter(codebook_size)
    counter.update(indices)
    return counter.result()


def bit_entropies(indices, bits: int) -> np.ndarray:
    """Entropy in bits of each binary digit k of the ids (LFQ bit k), (bits,); 1.0 = balanced bit."""
    flat = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices).reshape(-1)
    ones = ((flat[:, None] >> np.arange(bits)) & 1).mean(axis=0) if flat.size else np.zeros(bits)
    p = np.clip(ones, 1e-12, 1 - 1e-12)
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((ones <= 0) | (ones >= 1), 0.0, h)


# ======================================================================== audio
# Audio codec quality. Waveforms are float tensors (..., N); everything is computed in float32 or better,
# never under autocast. The spectral primitives (STFT magnitude, HTK mel filterbank) are in dsp.py.
import torch  # noqa: E402

from videopoet.dsp import MEL_LOG_EPS, MEL_SCALES, mel_spectrogram  # noqa: E402


def si_snr(estimate, reference, *, eps: float = 1e-8, cap_db: float | None = None) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB over the last axis: (..., N), (..., N) → float64 (...).

    Both signals are made zero-mean; the estimate is split into its projection on the reference (target)
    and the rest (noise): 10·log10(‖target‖² / ‖noise‖²). Higher is better; a silent reference gives −inf
    unless the estimate is silent too (then eps/eps → 0 dB). ``cap_db`` (for a training loss) adds
    10^(−cap/10)·‖target‖² to the noise energy, a soft cap that keeps nearly perfect examples from
    dominating. Differentiable.
    """
    est = torch.as_tensor(estimate).double()
    ref = torch.as_tensor(reference).double()
    if est.shape != ref.shape:
        raise ValueError(f"si_snr: estimate {tuple(est.shape)} and reference {tuple(ref.shape)} differ")
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    target_energy, noise_energy = target.pow(2).sum(-1), noise.pow(2).sum(-1)
    if cap_db is not None:
        noise_energy = noise_energy + 10 ** (-cap_db / 10) * target_energy
    return 10 * torch.log10((target_energy + eps) / (noise_energy + eps))


def multiscale_mel_distance(
    estimate: torch.Tensor, reference: torch.Tensor, *, sample_rate: int = 16000, scales=MEL_SCALES
) -> torch.Tensor:
    """Mean over ``scales`` of the mean |log mel(estimate) − log mel(reference)| (natural log): (B,) per clip.

    Lower is better; 0 for identical signals. ``MEL_LOG_EPS`` is added before the log, so differences
    between near-silent regions count little.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"mel distance: shapes differ, {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    est = estimate.reshape(-1, estimate.shape[-1])
    ref = reference.reshape(-1, reference.shape[-1])
    per_scale = []
    for n_fft in scales:
        a = (mel_spectrogram(est, n_fft, sample_rate=sample_rate) + MEL_LOG_EPS).log()
        b = (mel_spectrogram(ref, n_fft, sample_rate=sample_rate) + MEL_LOG_EPS).log()
        per_scale.append((a - b).abs().mean(dim=(1, 2)))
    return torch.stack(per_scale).mean(0)


def rvq_codebook_usage(codes, codebook_size: int) -> list[dict[str, float]]:
    """``codebook_usage`` of each RVQ level of codes (B, K, F), as dicts: usage (fraction of the codebook
    used), entropy_bits, perplexity."""
    c = torch.as_tensor(codes)
    if c.ndim != 3 or c.is_floating_point():
        raise ValueError(f"codes must be integers shaped (B, levels, frames), got {c.dtype} {tuple(c.shape)}")
    out = []
    for k in range(c.shape[1]):
        u = codebook_usage(c[:, k], codebook_size)
        out.append({"usage": u.used_fraction, "entropy_bits": u.entropy_bits, "perplexity": u.perplexity})
    return out


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
