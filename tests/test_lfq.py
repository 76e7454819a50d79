"""Lookup-free quantizer: index formula, round trips, straight-through gradient, entropy terms."""

import itertools
import math

import pytest
import torch

from videopoet.tokenizers.quantizers import LFQ, binary_entropy_bits


def test_index_formula_and_codes():
    q = LFQ(5)
    z = torch.randn(3, 5, 2, 4, 4)
    out = q(z, compute_losses=False)
    expected = sum((2**k) * (z[:, k] > 0).long() for k in range(5))
    assert torch.equal(out.indices, expected)
    assert torch.equal(out.codes, torch.where(z > 0, 1.0, -1.0))
    assert out.indices.dtype == torch.long and out.indices.shape == (3, 2, 4, 4)


@pytest.mark.parametrize("bits,scale", [(1, 1.0), (6, 1.0), (18, 1 / math.sqrt(18))])
def test_index_code_round_trip(bits, scale):
    q = LFQ(bits, code_scale=scale, entropy_group_bits=9)
    idx = torch.randint(0, 2**bits, (2, 3, 5, 7))
    codes = q.indices_to_codes(idx)
    assert codes.shape == (2, bits, 3, 5, 7)
    assert torch.allclose(codes.abs(), torch.full_like(codes, scale))
    assert torch.equal(q(codes, compute_losses=False).indices, idx)
    every = torch.arange(2 ** min(bits, 10)).view(1, -1)
    assert torch.equal(q(q.indices_to_codes(every), compute_losses=False).indices, every)


def test_straight_through_gradient():
    q = LFQ(4)
    z = torch.randn(2, 4, 3, requires_grad=True)
    (q(z).codes * torch.arange(4.0).view(1, 4, 1)).sum().backward()
    assert torch.allclose(z.grad, torch.arange(4.0).view(1, 4, 1).expand(2, 4, 3))


def test_bad_indices_rejected():
    q = LFQ(4)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        q.indices_to_codes(torch.tensor([[16]]))
    with pytest.raises(ValueError, match="integer"):
        q.indices_to_codes(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="LFQ expects"):
        q(torch.randn(2, 3, 4))


def _exact_entropies(z, bits, inv_t, scale=1.0):
    """Reference: full softmax over all 2^K codes of −inv_t·‖z − c‖²."""
    codes = torch.tensor(list(itertools.product([0, 1], repeat=bits)), dtype=torch.float64).flip(1)
    codes = (codes * 2 - 1) * scale  # row c has bit k = (c >> k) & 1
    zf = z.double().transpose(0, 1).reshape(bits, -1).t()  # (N, K)
    p = torch.softmax(-inv_t * torch.cdist(zf, codes).pow(2), dim=1)
    per_sample = -(p * p.clamp_min(1e-30).log()).sum(1).mean()
    avg = p.mean(0)
    return per_sample, -(avg * avg.clamp_min(1e-30).log()).sum()


def test_entropy_terms_match_full_softmax():
    torch.manual_seed(0)
    z = torch.randn(4, 6, 3, 3) * 0.7
    per_ref, book_ref = _exact_entropies(z, 6, inv_t=0.8)
    out = LFQ(6, inv_temperature=0.8, entropy_group_bits=6)(z)
    assert out.per_sample_entropy.item() == pytest.approx(per_ref.item(), rel=1e-4)
    assert out.codebook_entropy.item() == pytest.approx(book_ref.item(), rel=1e-4)
    assert out.entropy_loss.item() == pytest.approx((per_ref - book_ref).item(), rel=1e-4, abs=1e-5)
    grouped = LFQ(6, inv_temperature=0.8, entropy_group_bits=2)(z)
    # per-sample entropy factorises exactly; grouped codebook entropy is an upper bound of the joint one
    assert grouped.per_sample_entropy.item() == pytest.approx(per_ref.item(), rel=1e-4)
    assert grouped.codebook_entropy.item() >= book_ref.item() - 1e-5


def test_entropy_gradient_spreads_collapsed_codes():
    """Minimising the entropy loss from a collapsed start must increase codebook entropy."""
    torch.manual_seed(0)
    z = (torch.randn(64, 4) * 0.1 + 1.0).requires_grad_(True)  # every token near code 15
    q = LFQ(4, entropy_group_bits=4)
    opt = torch.optim.Adam([z], lr=0.05)
    start = q(z).codebook_entropy.item()
    for _ in range(50):
        opt.zero_grad()
        q(z).entropy_loss.backward()
        opt.step()
    out = q(z)
    assert out.codebook_entropy.item() > start + 1.0
    assert out.indices.unique().numel() > 4


def test_commit_loss_and_bit_monitor():
    z = torch.tensor([[[0.5, -2.0, 1.0, 3.0]]])  # (B=1, K=1, N=4)
    q = LFQ(1)
    out = q(z)
    assert out.commit_loss.item() == pytest.approx(((0.5 - 1) ** 2 + 1.0 + 0 + 4.0) / 4)
    assert out.bit_ones.tolist() == [0.75]
    assert binary_entropy_bits(torch.tensor([0.5, 0.0, 1.0])).tolist() == pytest.approx(
        [1.0, 0.0, 0.0], abs=1e-6
    )
