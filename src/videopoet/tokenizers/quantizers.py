"""Quantizers: lookup-free quantization (LFQ, MAGVIT-v2) for video and residual vector quantization (RVQ,
SoundStream) for audio.

Dimension key: B batch, K code bits (LFQ) or RVQ levels, D latent width, N tokens, C codebook size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from videopoet.distributed import all_sum, gather_rows, global_mean, local_rand, local_randint

# ======================================================================== LFQ (video tokenizer)
# Lookup-free quantization (MAGVIT-v2, arXiv 2310.05737 §3.1). The latent z has K channels; each is
# quantized to its sign, so the codebook is the 2^K corners of a hypercube and needs no lookup table.
# Codes are ±code_scale (±1 as in the paper by default); the index of a token is Σ_k 2^k·1[z_k > 0],
# with bit k taken from channel k.
#
# Entropy penalty: each token gets a soft distribution over codes, softmax(−inv_temperature·‖z − c‖²).
# Because ‖z − c‖² is a sum over bits, that distribution is a product of K independent per-bit
# Bernoullis, so the per-sample entropy is *exactly* the sum of K binary entropies (cheap at any K).
# The codebook (batch-average) entropy does not factorise; the full 2^K-wide average is infeasible at
# K = 18 (2^18 floats per token), so the bits are split into groups of ``entropy_group_bits`` and the
# entropies of the per-group batch-average distributions are summed. With one group (group bits = K) that
# is the exact MAGVIT-v2 term; with several groups it is an upper bound of the joint codebook entropy that
# is maximal exactly when every group's codes are used uniformly (memory per token: 2^group_bits floats).
# Loss = per-sample entropy − diversity_weight · codebook entropy (nats), plus a commitment loss
# ‖z − sg(q)‖². Weights and their annealing live in the training config, not here.


class LFQOutput(NamedTuple):
    codes: torch.Tensor  # float (B, K, ...) ±code_scale, straight-through gradient to z
    indices: torch.Tensor  # long (B, ...) in [0, 2^K)
    entropy_loss: torch.Tensor  # scalar: per_sample_entropy − diversity_weight · codebook_entropy
    per_sample_entropy: torch.Tensor  # scalar, nats: mean entropy of one token's soft code distribution
    codebook_entropy: torch.Tensor  # scalar, nats: entropy of the batch-average distribution (grouped)
    commit_loss: torch.Tensor  # scalar: mean (z − sg(q))²
    bit_ones: torch.Tensor  # float (K,): fraction of tokens whose bit k is 1 (collapse monitoring)


class LFQ(nn.Module):
    """Lookup-free quantizer over channel dim 1 of a (B, K, ...) latent."""

    def __init__(
        self,
        bits: int,
        *,
        code_scale: float = 1.0,
        inv_temperature: float = 1.0,
        entropy_group_bits: int = 12,
        diversity_weight: float = 1.0,
    ):
        super().__init__()
        if not 1 <= bits <= 62:
            raise ValueError(f"LFQ bits must be in [1, 62] (int64 indices), got {bits}")
        if code_scale <= 0 or inv_temperature <= 0:
            raise ValueError("LFQ code_scale and inv_temperature must be positive")
        if entropy_group_bits < 1:
            raise ValueError(f"entropy_group_bits must be ≥ 1, got {entropy_group_bits}")
        self.bits = bits
        self.code_scale = code_scale
        self.inv_temperature = inv_temperature
        self.diversity_weight = diversity_weight
        # Groups of at most entropy_group_bits consecutive bits (the last may be smaller).
        self.groups = [(s, min(bits, s + entropy_group_bits)) for s in range(0, bits, entropy_group_bits)]
        self.register_buffer("bit_weights", 2 ** torch.arange(bits, dtype=torch.long), persistent=False)

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    def forward(self, z: torch.Tensor, *, compute_losses: bool = True) -> LFQOutput:
        if z.ndim < 2 or z.shape[1] != self.bits:
            raise ValueError(f"LFQ expects a (B, {self.bits}, ...) latent, got shape {tuple(z.shape)}")
        positive = z > 0
        hard = torch.where(positive, self.code_scale, -self.code_scale).to(z.dtype)
        codes = z + (hard - z).detach()  # straight-through estimator
        indices = self.bits_to_indices(positive)
        zero = z.new_zeros((), dtype=torch.float32)
        bit_ones = positive.float().transpose(0, 1).reshape(self.bits, -1).mean(1)
        if not compute_losses:
            return LFQOutput(codes, indices, zero, zero, zero, zero, bit_ones)
        with torch.autocast(z.device.type, enabled=False):
            zf = z.float().transpose(0, 1).reshape(self.bits, -1).t()  # (N, K) tokens × bits
            commit = (zf - hard.float().transpose(0, 1).reshape(self.bits, -1).t()).pow(2).mean()
            # p(bit = 1) = softmax over {+s, −s} of −inv_t·(z ∓ s)²  =  sigmoid(4·s·inv_t·z)
            logit = 4.0 * self.code_scale * self.inv_temperature * zf  # (N, K)
            log_p1 = nn.functional.logsigmoid(logit)
            log_p0 = nn.functional.logsigmoid(-logit)
            per_sample = -(log_p1.exp() * log_p1 + log_p0.exp() * log_p0).sum(1).mean()
            codebook = zf.new_zeros(())
            for start, stop in self.groups:
                bits = _code_bits(stop - start, zf.device)  # (C_g, g) 0/1 table of the group's codes
                # log p(code) = Σ_k log p_k(bit_k): (N, C_g)
                logp = log_p1[:, start:stop] @ bits.t() + log_p0[:, start:stop] @ (1 - bits).t()
                avg = global_mean(logp.exp(), 0)  # (C_g,) over the global batch's tokens
                codebook = codebook - (avg * torch.log(avg.clamp_min(1e-12))).sum()
        loss = per_sample - self.diversity_weight * codebook
        return LFQOutput(codes, indices, loss, per_sample, codebook, commit, bit_ones)

    def bits_to_indices(self, positive: torch.Tensor) -> torch.Tensor:
        """bool (B, K, ...) → long (B, ...): Σ_k 2^k·bit_k."""
        shape = [1, self.bits] + [1] * (positive.ndim - 2)
        return (positive.long() * self.bit_weights.view(shape)).sum(1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """long (B, ...) → float (B, K, ...) of ±code_scale (the inverse of the index formula)."""
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.codebook_size}) for a {self.bits}-bit LFQ")
        bits = (indices.long().unsqueeze(1) >> self._shifts(indices.ndim + 1, indices.device)) & 1
        return (bits.float() * 2 - 1) * self.code_scale

    def _shifts(self, ndim: int, device: torch.device) -> torch.Tensor:
        return torch.arange(self.bits, device=device).view([1, self.bits] + [1] * (ndim - 2))


def _code_bits(g: int, device: torch.device) -> torch.Tensor:
    """float (2^g, g): row c holds the bits of code c (bit k = (c >> k) & 1)."""
    codes = torch.arange(2**g, device=device).unsqueeze(1)
    return ((codes >> torch.arange(g, device=device)) & 1).float()


_LN2 = 0.6931471805599453  # ln 2: nats → bits


def binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of Bernoulli(p), elementwise (0 at p ∈ {0, 1})."""
    p = p.double()
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / _LN2


# ======================================================================== RVQ (audio tokenizer)
# Residual vector quantization (SoundStream, arXiv 2107.03312 §3.3). Level k quantizes the residual left by
# levels 1..k−1 with its own codebook of C vectors; the sum of the chosen vectors approximates the latent.
# Codebooks are not trained by gradients: each keeps exponential moving averages of the vectors assigned
# to every code (count and sum, Laplace-smoothed) and sets code = sum / count, as in VQ-VAE-2 / SoundStream.
# On the first training batch every level is initialised by k-means on that batch's residuals; a code
# whose EMA count falls below ``dead_code_threshold`` is restarted on a random residual vector of the
# current batch, so the whole codebook stays in use. A restarted code starts with a count of
# RESTART_GRACE × threshold, so it has ~ln(RESTART_GRACE)/(1 − decay) steps (69 at decay 0.99) to attract
# data before it counts as dead again; starting at the threshold itself restarted most of a skewed
# codebook at every step (hundreds of codes per step), and the constant churn lowered held-out usage.
# The encoder is pulled towards its codes by the commitment loss and receives the decoder's gradient
# through a straight-through estimator.
# Quantizer dropout: in training each example uses, with probability ``dropout``, a uniformly drawn number
# of levels 1..K (else all K), so one model decodes at every bitrate; a level's codebook is only updated
# from the examples that use it.
# Distances and EMA statistics are computed in float32 (or float64) even under bf16 autocast.


RESTART_GRACE = 2.0


class RVQOutput(NamedTuple):
    quantized: torch.Tensor  # float (B, D, N): sum of the used levels' code vectors (straight-through)
    codes: torch.Tensor  # long (B, K, N): code index per level (all K levels, even where dropped)
    commitment_loss: torch.Tensor  # scalar: Σ_k mean over used examples of (r_k − sg(q_k))²
    num_levels: torch.Tensor  # long (B,): levels used per example (K unless quantizer dropout drew fewer)


class EMACodebook(nn.Module):
    """One RVQ level: C code vectors of width D with EMA updates, k-means init and dead-code restart."""

    def __init__(
        self, *, dim: int, size: int, decay: float, dead_code_threshold: float, kmeans_iters: int, eps: float
    ):
        super().__init__()
        self.dim, self.size, self.decay, self.eps = dim, size, decay, eps
        self.dead_code_threshold, self.kmeans_iters = dead_code_threshold, kmeans_iters
        embed = torch.randn(size, dim)
        self.register_buffer("embed", embed)  # (C, D) the code vectors
        self.register_buffer("cluster_size", torch.ones(size))  # (C,) EMA of assignments per batch
        self.register_buffer("embed_avg", embed.clone())  # (C, D) EMA of the sum of assigned vectors
        self.register_buffer("initted", torch.tensor(False))  # set once k-means has run on real data

    @torch.no_grad()
    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, D) float → long (M,) index of the nearest code (squared Euclidean distance)."""
        return _rvq_nearest(x, self.embed.to(x.dtype))

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """long (...) → float (..., D)."""
        return nn.functional.embedding(idx, self.embed)

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor) -> None:
        """Initialise the codes by k-means on the vectors x (M, D) (sampled with replacement when M < C)."""
        x = x.float()
        if x.shape[0] >= self.size:
            centroids = x[torch.randperm(x.shape[0], device=x.device)[: self.size]].clone()
        else:
            centroids = x[torch.randint(0, x.shape[0], (self.size,), device=x.device)].clone()
        counts = torch.zeros(self.size, device=x.device)
        for _ in range(self.kmeans_iters):
            idx = _rvq_nearest(x, centroids)
            counts = torch.bincount(idx, minlength=self.size).float()
            sums = torch.zeros_like(centroids).index_add_(0, idx, x)
            used = counts > 0
            centroids[used] = sums[used] / counts[used, None]
        self.embed.copy_(centroids)
        # Counts start at the k-means cluster sizes: empty clusters are dead and get restarted at once.
        self.cluster_size.copy_(counts)
        self.embed_avg.copy_(centroids * counts[:, None])
        self.initted.fill_(True)

    @torch.no_grad()
    def fresh_statistics(self) -> None:
        """EMA statistics for codes loaded without them (``save_pretrained`` leaves them out).

        Every code gets the count of a just-restarted one, so fine-tuning does not restart every code
        whose first batch happens to under-use it (with a count of 1 and a threshold of 1, a fine-tune of
        the bundled codec restarted 2,264 of its 4,096 codes at step 1).
        """
        count = RESTART_GRACE * self.dead_code_threshold
        self.cluster_size.fill_(count)
        self.embed_avg.copy_(self.embed * count)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, idx: torch.Tensor, *, restart: bool = True) -> int:
        """EMA step from vectors x (M, D) assigned to codes idx (M,); restart dead codes; → #restarted."""
        x = x.float()
        counts = all_sum(torch.bincount(idx, minlength=self.size).float())
        sums = all_sum(torch.zeros(self.size, self.dim, device=x.device).index_add_(0, idx, x))
        x = gather_rows(x)  # restarts pick from the global batch's vectors
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_avg.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        if not restart:
            return 0
        dead = self.cluster_size < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead and x.shape[0] > 0:
            pick = torch.randint(0, x.shape[0], (num_dead,), device=x.device)
            self.embed[dead] = x[pick]
            self.cluster_size[dead] = RESTART_GRACE * self.dead_code_threshold
            self.embed_avg[dead] = x[pick] * (RESTART_GRACE * self.dead_code_threshold)
        return num_dead


def _rvq_nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """x (M, D), centroids (C, D) → long (M,) index of the nearest centroid (squared distance)."""
    dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ centroids.t() + centroids.pow(2).sum(1)[None]  # (M, C)
    return dist.argmin(dim=1)


class ResidualVQ(nn.Module):
    """K levels of EMA codebooks over latents (B, D, N). ``forward`` trains; ``encode``/``decode`` do not."""

    def __init__(
        self,
        *,
        dim: int,
        num_levels: int,
        codebook_size: int,
        decay: float = 0.99,
        dead_code_threshold: float = 0.5,
        kmeans_iters: int = 10,
        dropout: float = 0.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        if num_levels < 1 or codebook_size < 2 or dim < 1:
            raise ValueError(
                "RVQ needs num_levels ≥ 1, codebook_size ≥ 2, dim ≥ 1; "
                f"got {num_levels}, {codebook_size}, {dim}"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"quantizer dropout must be a probability in [0, 1], got {dropout}")
        self.dim, self.num_levels, self.codebook_size, self.dropout = dim, num_levels, codebook_size, dropout
        self.levels = nn.ModuleList(
            EMACodebook(
                dim=dim,
                size=codebook_size,
                decay=decay,
                dead_code_threshold=dead_code_threshold,
                kmeans_iters=kmeans_iters,
                eps=eps,
            )
            for _ in range(num_levels)
        )
        self.restart_dead_codes = True  # the training loop may switch restarts off near the end of a run
        self.last_restarts: list[int] = [0] * num_levels  # dead codes restarted per level by the last step

    def _levels_arg(self, n_levels: int | None) -> int:
        n = self.num_levels if n_levels is None else int(n_levels)
        if not 1 <= n <= self.num_levels:
            raise ValueError(f"n_levels must be in 1..{self.num_levels}, got {n_levels}")
        return n

    def forward(self, z: torch.Tensor, n_levels: int | None = None) -> RVQOutput:
        """z (B, D, N) → RVQOutput. In training mode: k-means init, EMA updates, restarts, dropout."""
        b, d, n = self._check_latents(z)
        top = self._levels_arg(n_levels)
        work_dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z32 = z.to(work_dtype)
            used = torch.full((b,), top, dtype=torch.long, device=z.device)
            if self.training and self.dropout > 0 and top > 1:
                drop = local_rand(b, device=z.device) < self.dropout
                drawn = local_randint(1, top + 1, b, device=z.device)
                used = torch.where(drop, drawn, used)
            residual = z32.detach()
            quantized = torch.zeros_like(z32)
            commit = z32.new_zeros(())
            codes = []
            for k, level in enumerate(self.levels[:top]):
                flat = residual.transpose(1, 2).reshape(b * n, d)  # (B·N, D), row = (example, frame)
                active = used > k  # (B,) examples that use level k
                if self.training and not bool(level.initted):
                    level.kmeans_init(gather_rows(flat))
                idx = level.nearest(flat)  # (B·N,)
                q = level.lookup(idx).to(work_dtype).reshape(b, n, d).transpose(1, 2)  # (B, D, N)
                if self.training:
                    keep = active.repeat_interleave(n)  # (B·N,) in the row order of ``flat``
                    if bool(all_sum(keep.sum()) > 0):  # decided over the global batch: every rank joins
                        self.last_restarts[k] = level.ema_update(
                            flat[keep], idx[keep], restart=self.restart_dead_codes
                        )
                mask = active.to(work_dtype)[:, None, None]  # (B, 1, 1)
                # Commitment: the residual the encoder produced vs. the (fixed) code it was assigned.
                r_live = z32 - quantized  # = ``residual`` for active examples, with the encoder's gradient
                commit = commit + ((r_live - q) ** 2 * mask).mean()
                quantized = quantized + q * mask
                residual = residual - q
                codes.append(idx.reshape(b, n))
            out = z32 + (quantized - z32).detach()  # straight-through: forward = codes, backward = identity
        return RVQOutput(out.to(z.dtype), torch.stack(codes, dim=1), commit, used)

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """z (B, D, N) → long codes (B, n_levels, N). Pure: never updates the codebooks."""
        b, d, n = self._check_latents(z)
        top = self._levels_arg(n_levels)
        codes = []
        with torch.autocast(device_type=z.device.type, enabled=False):  # distances in float32 under bf16
            residual = z.to(torch.promote_types(z.dtype, torch.float32)).transpose(1, 2).reshape(b * n, d)
            for level in self.levels[:top]:
                idx = level.nearest(residual)  # (B·N,)
                residual = residual - level.lookup(idx).to(residual.dtype)
                codes.append(idx.reshape(b, n))
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """long codes (B, k, N) with 1 ≤ k ≤ K (the first k levels) → float32 embeddings (B, D, N)."""
        if not isinstance(codes, torch.Tensor) or codes.dtype not in (torch.long, torch.int32, torch.int16):
            raise ValueError(f"codes must be integer tensors (B, levels, frames), got {_rvq_describe(codes)}")
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.num_levels:
            raise ValueError(
                f"codes must have shape (B, levels, frames) with 1..{self.num_levels} levels, "
                f"got {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got values in "
                f"[{int(codes.min())}, {int(codes.max())}]; remove the LM vocabulary's level offsets first"
            )
        codes = codes.long()
        out = sum(level.lookup(codes[:, k]) for k, level in enumerate(self.levels[: codes.shape[1]]))
        return out.float().transpose(1, 2)  # (B, N, D) → (B, D, N)

    def _check_latents(self, z: torch.Tensor) -> tuple[int, int, int]:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.ndim != 3:
            raise ValueError(f"RVQ expects float latents (B, D, N), got {_rvq_describe(z)}")
        if z.shape[1] != self.dim:
            raise ValueError(f"RVQ expects latents with D={self.dim} channels, got shape {tuple(z.shape)}")
        return tuple(z.shape)


def _rvq_describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
