"""Video tokenizer helpers: COMMIT / stylization conditions, metrics, GAN / LeCam / perceptual / edge loss."""

import numpy as np
import pytest
import torch

from videopoet.eval.metrics import CodebookCounter, bit_entropies, codebook_usage, psnr, ssim
from videopoet.tokenizers import conditioning as C
from videopoet.tokenizers.losses import (
    DISCRIMINATOR_PRESETS,
    Discriminator3D,
    LeCam,
    PerceptualLoss,
    VGG16Features,
    d_loss,
    edge_loss,
    g_loss,
    load_feature_network,
)


def _video(b=2, t=9, h=16, w=24, seed=0):
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------ conditions
def test_frame_prediction_replicates_last_given_frame():
    v = _video()
    c = C.frame_prediction(v, 3)
    assert torch.equal(c.video[:, :, :3], v[:, :, :3])
    for t in range(3, 9):
        assert torch.equal(c.video[:, :, t], v[:, :, 2])
    assert c.mask.shape == (2, 1, 9, 16, 24) and c.mask[:, :, :3].all() and not c.mask[:, :, 3:].any()
    with pytest.raises(ValueError, match="given"):
        C.frame_prediction(v, 0)


def test_central_inpainting_zeroes_centre_only():
    v = _video()
    c = C.central_inpainting(v, 0.5)
    hole = ~c.mask[0, 0, 0]
    assert hole.sum() == 8 * 12 and hole[4:12, 6:18].all()
    assert torch.equal(c.video * c.mask, v * c.mask)  # kept pixels are the input
    assert (c.video[:, :, :, 4:12, 6:18] == 0).all()


@pytest.mark.parametrize("mode", C.OUTPAINT_MODES)
def test_outpainting_edge_padding(mode):
    v = _video()
    c = C.outpainting(v, mode, 0.5)
    assert torch.equal(c.video * c.mask, v * c.mask)
    keep = c.mask[0, 0, 0]
    rows, cols = keep.any(1).nonzero().flatten(), keep.any(0).nonzero().flatten()
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    expect = {"central": (4, 11, 6, 17), "horizontal": (0, 15, 6, 17), "vertical": (4, 11, 0, 23)}[mode]
    assert (y0, y1, x0, x1) == expect
    # every pixel outside equals its nearest kept pixel (clamped coordinates)
    ys = torch.arange(16).clamp(y0, y1)
    xs = torch.arange(24).clamp(x0, x1)
    assert torch.equal(c.video, v[:, :, :, ys][:, :, :, :, xs])


def test_commit_dispatch_and_errors():
    v = _video()
    assert torch.equal(
        C.commit_condition(v, "outpainting_vertical").video, C.outpainting(v, "vertical").video
    )
    assert torch.equal(C.commit_condition(v, "frame_prediction", given=2).mask, C.frame_prediction(v, 2).mask)
    with pytest.raises(ValueError, match="unknown COMMIT task"):
        C.commit_condition(v, "outpainting_diagonal")
    with pytest.raises(ValueError, match="fraction"):
        C.central_inpainting(v, 1.5)
    with pytest.raises(ValueError, match="float tensor"):
        C.outpainting(v[0])


def test_flow_depth_video_normalisation():
    t, h, w = 5, 8, 8
    flow = torch.zeros(t - 1, h, w, 2)
    flow[1, 2, 3] = torch.tensor([3.0, -4.0])  # magnitude 5 = the clip maximum
    depth = torch.linspace(1, 9, t * h * w).view(t, h, w)
    v = C.flow_depth_video(flow, depth)
    assert v.shape == (1, 3, t, h, w) and v.abs().max() <= 1
    assert (v[0, :2, 0] == 0).all()  # zero flow into the first frame
    assert v[0, 0, 2, 2, 3] == pytest.approx(0.6) and v[0, 1, 2, 2, 3] == pytest.approx(-0.8)
    assert v[0, 2].max() == pytest.approx(1.0) and v[0, 2, 0, 0, 0] == pytest.approx(1.0)  # nearest → +1
    assert v[0, 2].min() == pytest.approx(-1.0)
    fixed = C.flow_depth_video(flow, depth, flow_scale=10.0)
    assert fixed[0, 0, 2, 2, 3] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="frames"):
        C.flow_depth_video(torch.zeros(2, h, w, 2), depth)


# ------------------------------------------------------------------ metrics
def test_psnr_known_value():
    x = torch.zeros(2, 3, 4, 8, 8)
    y = x + 0.1  # MSE 0.01, range 2 → 10·log10(4 / 0.01) = 26.02 dB
    assert psnr(y, x).tolist() == pytest.approx([26.0206] * 2, abs=1e-3)
    assert psnr(x, x).tolist() == [100.0, 100.0]


def test_ssim_properties():
    x = _video(1, 2, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0)
    a, b = torch.full((1, 3, 1, 16, 16), 0.2), torch.full((1, 3, 1, 16, 16), -0.3)
    c1 = (0.01 * 2) ** 2
    assert ssim(a, b).item() == pytest.approx((2 * 0.2 * -0.3 + c1) / (0.04 + 0.09 + c1), rel=1e-6)
    noisy = [ssim((x + s * torch.randn_like(x)).clamp(-1, 1), x).item() for s in (0.05, 0.2, 0.5)]
    assert noisy[0] > noisy[1] > noisy[2]
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 1, 8, 8), torch.zeros(1, 3, 1, 8, 8))


def test_codebook_usage_and_bit_entropies():
    u = codebook_usage(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), 8)
    assert (u.used, u.used_fraction, u.entropy_bits, u.tokens) == (4, 0.5, pytest.approx(2.0), 8)
    counter = CodebookCounter(4)
    counter.update(torch.tensor([0, 0]))
    counter.update(np.array([[3]]))
    assert counter.result().used == 2
    with pytest.raises(ValueError, match="outside"):
        counter.update(torch.tensor([4]))
    h = bit_entropies(torch.tensor([0, 1, 2, 3]), 3)
    assert h.tolist() == pytest.approx([1.0, 1.0, 0.0])


# ------------------------------------------------------------------ losses
def test_gan_losses_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert d_loss(real, fake, "hinge").item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert g_loss(fake, "hinge").item() == pytest.approx(0.75)
    sp = torch.nn.functional.softplus
    assert d_loss(real, fake, "non_saturating").item() == pytest.approx(
        (sp(-real).mean() + sp(fake).mean()).item()
    )
    with pytest.raises(ValueError, match="hinge"):
        g_loss(fake, "wasserstein")


def test_edge_loss_weighs_thin_detail_not_brightness():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    assert edge_loss(x, x).item() == 0
    assert edge_loss(x + 0.3, x).item() < 1e-6  # a uniform offset moves no edge (L1 would say 0.3)
    line = torch.zeros(1, 3, 1, 32, 32)
    line[..., 10, :] = 1.0  # a one-pixel line: 1/32 of the area ...
    blank = torch.zeros_like(line)
    l1 = (line - blank).abs().mean().item()
    assert edge_loss(line, blank).item() > 0.9 * l1  # ... but two full-contrast edges
    blur = torch.zeros_like(line)
    blur[..., 9:12, :] = 1 / 3  # the same light spread over three rows: the line's edges lose 2/3 of
    assert edge_loss(blur, line).item() > (blur - line).abs().mean().item()  # their contrast; costs > L1
    y = x.clone().requires_grad_(True)
    edge_loss(y, x + torch.randn_like(x) * 0.1).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_lecam_tracks_anchors():
    lc = LeCam(decay=0.5)
    reg = lc(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))  # anchors start at the first means
    assert lc.ema_real.item() == 2.0 and lc.ema_fake.item() == -2.0
    assert reg.item() == pytest.approx((9 + 25) / 2 + (9 + 25) / 2)
    lc(torch.tensor([4.0]), torch.tensor([0.0]))
    assert lc.ema_real.item() == 3.0 and lc.ema_fake.item() == -1.0


def test_discriminator_shapes_and_gradients():
    d = Discriminator3D(DISCRIMINATOR_PRESETS["debug"])
    x = _video(2, 9, 32, 32).requires_grad_(True)
    logits = d(x)
    assert logits.shape[:2] == (2, 1)
    logits.mean().backward()
    assert x.grad.abs().sum() > 0
    assert d(_video(1, 1, 32, 32)).shape[:2] == (1, 1)  # single frames work too


def test_perceptual_network_from_local_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = VGG16Features()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "vgg.safetensors"))
    loaded = load_feature_network(tmp_path / "vgg.safetensors")
    assert not any(p.requires_grad for p in loaded.parameters())
    loss = PerceptualLoss(loaded, frames_per_clip=2)
    x = _video(1, 3, 32, 32)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x.flip(-1), x).item() > 0
    save_file({"features.0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    from videopoet.errors import UserError

    with pytest.raises(UserError, match="lacks"):
        load_feature_network(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="not found"):
        load_feature_network(tmp_path / "missing.safetensors")
