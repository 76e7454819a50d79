"""Metric functions: small, pure, tested against references. Each takes arrays/tensors and returns numbers.

Sections: video reconstruction (PSNR, SSIM, codebook usage), audio (SI-SNR, mel distance), distribution
metrics (Fréchet distance, Inception Score).
"""

from __future__ import annotations

# ======================================================================== video reconstruction

# ======================================================================== audio

# ======================================================================== distributions
