"""Where does an audio codec lose the world's bounce clicks? Two checks; prints and writes JSON.

    python benchmarks/audio_click_diagnostics.py --model src/videopoet/pretrained/audio_tokenizer
    python benchmarks/audio_click_diagnostics.py --model DIR --overfit elu,snake --steps 300

1. ``latents``: on the held-out clips with bounces among the first ``--clips``, decode both the codes and
   the encoder's *unquantized* latents and count the bounces the click detector of ``eval/audio.py`` hears
   in each. If neither has clicks, the autoencoder drops them, not the quantizer.
2. ``overfit`` (optional, one entry per activation): a fresh ``tiny`` codec trained to overfit one batch of
   8 transient-centred crops of 0.4 s (Adam, lr 1e-3) with the training losses, the waveform terms below
   ``--wave-max-hz``, and ``--highband`` × the high-band loss. It reports the peak and median level above
   6.5 kHz of target and reconstruction (dB of mean |STFT|², 16 ms window). If the reconstruction's peak
   reaches the target's, the architecture can produce clicks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from videopoet.data.datasets import open_dataset  # noqa: E402
from videopoet.dsp import stft_magnitude  # noqa: E402
from videopoet.eval.audio import CLICK_BAND_HZ, detect_clicks, event_times  # noqa: E402
from videopoet.tokenizers.audio import PRESETS, AudioTokenizer  # noqa: E402
from videopoet.tokenizers.audio_losses import MultiScaleSpectralLoss  # noqa: E402
from videopoet.train.audio_tokenizer import (  # noqa: E402
    AudioLossConfig,
    AudioTrainConfig,
    CropAudio,
    open_audio_dataset,
    reconstruction_loss,
)
from videopoet.train.loop import StepItems  # noqa: E402


@torch.no_grad()
def latents_check(model: AudioTokenizer, clips: int) -> dict:
    ds = open_dataset("synthetic:heldout", frames=17, width=16, height=16, split="heldout")
    sr, hop = model.config.sample_rate, model.hop
    heard = {"codes": 0, "latents": 0}
    events = 0
    for i in range(clips):
        s = ds[i]
        ev = event_times(s)
        if not ev:
            continue
        w = torch.from_numpy(np.asarray(s.audio, np.float32))[None, None]
        z = model.encoder(w[..., : (w.shape[-1] // hop) * hop])
        q = model.quantizer.decode(model.quantizer.encode(z))
        for name, lat in (("codes", q), ("latents", z)):
            heard[name] += detect_clicks(model.decoder(lat)[0][0, 0].numpy(), sr, ev).hits
        events += len(ev)
    return {
        "clips": clips,
        "events": events,
        "heard_from_codes": heard["codes"],
        "heard_from_latents": heard["latents"],
    }


def _band_levels(x: torch.Tensor, sample_rate: int) -> tuple[float, float]:
    mag = stft_magnitude(x.reshape(x.shape[0], -1), 256)
    band = torch.linspace(0, sample_rate / 2, mag.shape[1]) >= CLICK_BAND_HZ
    p = mag[:, band].pow(2).mean(1)  # (B, T)
    peak = float(p.max(1).values.mean())
    median = float(p.median(1).values.mean())
    return round(10 * np.log10(peak + 1e-20), 1), round(10 * np.log10(median + 1e-20), 1)


def overfit_check(activation: str, steps: int, highband: float, wave_max_hz: float, seed: int) -> dict:
    torch.manual_seed(seed)
    cfg = AudioTrainConfig(preset="tiny", segment_samples=6400)
    # the crops the training engine would feed at positions 0-7 (data order and crop offsets of the run)
    crops = StepItems(
        open_audio_dataset(cfg.data, cfg), CropAudio(6400, seed, transient_fraction=1.0), seed=seed
    )
    w = torch.stack([torch.as_tensor(crops[g][0]).reshape(1, -1).float() for g in range(8)])
    model = AudioTokenizer(dataclasses.replace(PRESETS["tiny"], activation=activation)).train()
    sr = model.config.sample_rate
    spectral = MultiScaleSpectralLoss(sample_rate=sr)
    # the trainer's own loss (unit weights), with the high band and phase-loss cut-off of the experiment
    losses = AudioLossConfig(highband=highband, highband_hz=wave_max_hz, wave_max_hz=wave_max_hz)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(steps):
        out = model(w)
        loss, _ = reconstruction_loss(losses, spectral, out.recon, w, out.commitment_loss, sample_rate=sr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        recon = model(w).recon
    t_peak, t_median = _band_levels(w, sr)
    r_peak, r_median = _band_levels(recon, sr)
    return {
        "activation": activation,
        "steps": steps,
        "target_peak_db": t_peak,
        "target_median_db": t_median,
        "recon_peak_db": r_peak,
        "recon_median_db": r_median,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="codec directory (default: the bundled codec)")
    p.add_argument("--clips", type=int, default=30, help="held-out clips scanned for bounces")
    p.add_argument("--overfit", default="", help="comma-separated activations for the overfit check")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--highband", type=float, default=50.0)
    p.add_argument("--wave-max-hz", type=float, default=6100.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="audio_click_diagnostics.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = AudioTokenizer.from_pretrained(args.model).float().eval()
    report = {"model": args.model or "bundled", "latents": latents_check(model, args.clips), "overfit": []}
    for act in [a for a in args.overfit.split(",") if a]:
        report["overfit"].append(overfit_check(act, args.steps, args.highband, args.wave_max_hz, args.seed))
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
