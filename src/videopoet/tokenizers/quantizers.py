"""Quantizers: lookup-free quantization (LFQ, MAGVIT-v2) for video and residual vector quantization (RVQ,
SoundStream) for audio.

Dimension key: B batch, K code bits (LFQ) or RVQ levels, D latent width, N tokens, C codebook size.
"""

from __future__ import annotations

# ======================================================================== LFQ (video tokenizer)

# ======================================================================== RVQ (audio tokenizer)
