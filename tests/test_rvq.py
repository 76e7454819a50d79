"""Residual vector quantizer: code ↔ embedding round trip, EMA/k-means training, dead codes, dropout."""

import math

import pytest
import torch

from videopoet.tokenizers.quantizers import ResidualVQ

pytestmark = pytest.mark.usefixtures("one_thread")


def _rvq(**kw):
    args = dict(dim=8, num_levels=3, codebook_size=16, decay=0.9, dead_code_threshold=0.5, kmeans_iters=5)
    args.update(kw)
    return ResidualVQ(**args)


def test_codes_embeddings_round_trip():
    torch.manual_seed(0)
    rvq = _rvq().eval()
    z = torch.randn(2, 8, 11)
    codes = rvq.encode(z)
    assert codes.shape == (2, 3, 11) and codes.dtype == torch.long
    emb = rvq.decode(codes)
    # Re-encoding the decoded embedding (a sum of code vectors) must give back the same codes level by
    # level, and the embedding equals the sum of the chosen code vectors.
    expected = sum(rvq.levels[k].embed[codes[:, k]] for k in range(3)).transpose(1, 2)
    torch.testing.assert_close(emb, expected)
    out = rvq(z)
    torch.testing.assert_close(out.quantized, emb)
    assert torch.equal(out.codes, codes)


def test_residual_levels_reduce_error_and_fewer_levels_decode():
    torch.manual_seed(0)
    rvq = _rvq(num_levels=4, codebook_size=32, dropout=0.0).train()
    z = torch.randn(16, 8, 20)
    for _ in range(3):  # k-means init + a few EMA steps on the same data
        rvq(z)
    rvq.eval()
    codes = rvq.encode(z)
    errors = [float((rvq.decode(codes[:, :k]) - z).pow(2).mean()) for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * float(z.pow(2).mean())
    # encode with fewer levels = the first levels of the full encoding
    assert torch.equal(rvq.encode(z, n_levels=2), codes[:, :2])


def test_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    rvq = _rvq().train()
    z = torch.randn(4, 8, 5, requires_grad=True)
    out = rvq(z)
    assert out.commitment_loss.item() > 0
    (out.quantized.sum() + 0 * out.commitment_loss).backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # identity gradient through the quantizer
    z.grad = None
    rvq(z).commitment_loss.backward()
    assert z.grad.abs().sum() > 0


def test_kmeans_init_from_data_and_eval_mode_is_pure():
    torch.manual_seed(0)
    # Data from 4 tight clusters far from the random initial codes.
    centres = torch.tensor([[10.0] * 8, [-10.0] * 8, [10.0, -10.0] * 4, [-10.0, 10.0] * 4])
    pts = centres[torch.randint(0, 4, (400,))] + 0.01 * torch.randn(400, 8)
    z = pts.reshape(4, 100, 8).transpose(1, 2)  # (B=4, D=8, N=100)
    rvq = _rvq(num_levels=1, codebook_size=4, kmeans_iters=20).eval()
    before = rvq.levels[0].embed.clone()
    rvq(z)
    rvq.encode(z)
    assert torch.equal(rvq.levels[0].embed, before), "eval mode must not touch the codebook"
    assert not bool(rvq.levels[0].initted)
    rvq.train()
    rvq(z)
    assert bool(rvq.levels[0].initted)
    dist = torch.cdist(centres, rvq.levels[0].embed)
    assert float(dist.min(dim=1).values.max()) < 0.5  # every cluster has a code on it


def test_dead_codes_restart_on_batch_vectors():
    torch.manual_seed(0)
    rvq = _rvq(num_levels=1, codebook_size=8, decay=0.5, dead_code_threshold=1.0).train()
    z = torch.randn(2, 8, 50)
    rvq(z)  # init
    level = rvq.levels[0]
    far = torch.full((8,), 1000.0)
    level.embed[3] = far  # a code nothing is assigned to
    level.cluster_size[3] = 0.0
    level.embed_avg[3] = far * 0.0
    rvq(z)
    assert rvq.last_restarts[0] >= 1
    flat = z.transpose(1, 2).reshape(-1, 8)
    # the restarted code now sits exactly on one of the batch vectors
    assert torch.cdist(level.embed[3:4], flat).min() < 1e-4


def test_a_restarted_code_gets_a_grace_period_before_it_counts_as_dead():
    from videopoet.tokenizers.quantizers import RESTART_GRACE

    torch.manual_seed(0)
    decay, threshold = 0.9, 1.0
    rvq = _rvq(num_levels=1, codebook_size=8, decay=decay, dead_code_threshold=threshold).train()
    z = torch.randn(2, 8, 50)
    rvq(z)  # init
    level = rvq.levels[0]
    level.embed[3] = torch.full((8,), 1000.0)
    level.cluster_size[3] = 0.0
    rvq(z)  # restarts code 3 with a count of RESTART_GRACE * threshold
    assert level.cluster_size[3] == RESTART_GRACE * threshold
    level.embed[3] = torch.full((8,), 1000.0)  # keep it unused from now on
    level.embed_avg[3] = level.embed[3] * level.cluster_size[3]
    survive = int(math.log(RESTART_GRACE) / -math.log(decay))  # unused steps before it falls below threshold
    restarted = []
    for _ in range(survive + 2):
        rvq(z)
        restarted.append(bool(torch.isclose(level.cluster_size[3], torch.tensor(RESTART_GRACE * threshold))))
    assert not any(restarted[: survive - 1]) and any(restarted[survive - 1 :])


def test_quantizer_dropout_uses_fewer_levels_and_masks_updates():
    import copy

    torch.manual_seed(0)
    rvq = _rvq(num_levels=4, dropout=1.0, dead_code_threshold=0.0).train()
    z = torch.randn(64, 8, 3)
    rvq(z)  # k-means init of every level
    frozen = copy.deepcopy(rvq).eval()
    out = rvq(z)
    used = out.num_levels
    assert used.min() >= 1 and used.max() <= 4 and len(set(used.tolist())) == 4
    for b in range(64):  # each example's output sums exactly the levels it used
        want = frozen.decode(out.codes[b : b + 1, : int(used[b])])
        torch.testing.assert_close(out.quantized[b : b + 1], want)
    # Level 4's codebook statistics moved only by the frames of examples that used 4 levels.
    active = (used > 3).repeat_interleave(3)
    idx = out.codes[:, 3].reshape(-1)[active]
    counts = torch.bincount(idx, minlength=16).float()
    expected = frozen.levels[3].cluster_size.lerp(counts, 1 - 0.9)
    torch.testing.assert_close(rvq.levels[3].cluster_size, expected)
    rvq.eval()
    assert torch.equal(rvq(z).num_levels, torch.full((64,), 4))


def test_decode_validates_codes():
    rvq = _rvq()
    with pytest.raises(ValueError, match="integer"):
        rvq.decode(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="levels"):
        rvq.decode(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        rvq.decode(torch.full((1, 3, 4), 16, dtype=torch.long))
    with pytest.raises(ValueError, match="n_levels"):
        rvq.encode(torch.randn(1, 8, 4), n_levels=0)
    with pytest.raises(ValueError, match="D=8"):
        rvq.encode(torch.randn(1, 7, 4))
