"""``videopoet eval audio``: reconstruction quality, codebook usage and bitrate of the audio codec.

Reads ``--num`` clips with sound from ``--data`` (``synthetic:heldout[:N]``, tar shards or a folder of
videos; 17 video frames = 2.125 s = 34,000 samples each), encodes and decodes them and writes OUT.json +
OUT.md (+ a few WAVs under OUT_samples/):

* SI-SNR (dB) per clip, averaged over the clips that are not silent (a silent reference has no SI-SNR),
  with all K levels and with the first 1..K−1 levels (quantizer dropout makes every prefix decodable);
* multi-scale mel distance (``eval.metrics.multiscale_mel_distance``) per clip, averaged;
* codebook usage per RVQ level over all frames of all clips: fraction of the codes used, entropy (bits),
  perplexity;
* bitrate = K · log2(codebook size) · frame rate;
* band levels: mean power (dB) of originals and reconstructions in 1 kHz bands (``band_levels``), which
  shows a codec that renders only the low part of the spectrum (SI-SNR, dominated by the loud low band,
  does not);
* the bounce-click check (synthetic clips): is a click present within one video frame (125 ms) of every
  wall bounce listed in ``attributes["events"]``, in the originals and in the reconstructions?

Click detector (``detect_clicks``): the world's voices keep their partials below 0.38 · sample rate
(6.08 kHz at 16 kHz) and its bounce clicks are broadband, so the energy above ``CLICK_BAND_HZ`` (6.5 kHz)
in 16 ms windows (hop 5 ms) is near zero except at clicks. A window around an event counts as "click
audible" when its peak high-band level exceeds both the clip's median high-band level by
``CLICK_CONTRAST_DB`` and the absolute floor ``CLICK_FLOOR_DB`` (dB relative to full-scale white noise's
level in that band). The same test on windows far from any event gives the false-alarm rate, reported
alongside so the detector's verdict can be trusted.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from videopoet.data.media import write_wav
from videopoet.errors import UserError

log = logging.getLogger("videopoet.eval.audio")

CLIP_FRAMES = 17  # evaluation clips: 17 video frames at 8 fps = 2.125 s (the paper's clip length)
PICTURE_SIZE = 16  # the clips' pictures are not used: read them as small as the readers allow
SILENT_PEAK = 1e-4  # clips whose peak is below this are silent: no SI-SNR is defined for them
CLICK_BAND_HZ = 6500.0  # clicks are detected by their energy above this frequency
CLICK_WINDOW = 256  # STFT window of the click detector (16 ms at 16 kHz)
CLICK_HOP = 80  # its hop (5 ms)
CLICK_CONTRAST_DB = 15.0  # a click stands this far above the clip's median high-band level ...
CLICK_FLOOR_DB = -50.0  # ... and above this absolute level (dB re. a full-scale white-noise frame's band)
EVENT_TOLERANCE_S = 0.125  # "within one frame": one video frame at 8 fps
NUM_WAV_EXAMPLES = 3  # originals + reconstructions written for listening
BAND_HZ = 1000.0  # width of the bands of the band-level report
BAND_FFT = 512  # STFT window of the band-level report
BAND_CHART_FLOOR_DB = -60.0  # the band chart's bars start at this level


def band_power(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """wave (B, N) → (bands,) power summed over the batch: mean |STFT|² per bin, averaged per BAND_HZ band."""
    from videopoet.dsp import stft_magnitude

    power = stft_magnitude(wave.reshape(wave.shape[0], -1), BAND_FFT).double().pow(2).mean(2).sum(0)  # (F,)
    freqs = torch.linspace(0, sample_rate / 2, power.shape[0], dtype=torch.float64)
    band = torch.clamp((freqs / BAND_HZ).long(), max=int(math.ceil(sample_rate / 2 / BAND_HZ)) - 1)
    return torch.zeros(int(band.max()) + 1, dtype=torch.float64).index_add_(0, band, power) / torch.bincount(
        band
    )


# ---------------------------------------------------------------------------------------------- clicks
def high_band_db(wave: np.ndarray | torch.Tensor, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per STFT window: (centre time s, high-band level dB); 0 dB = full-scale white noise's band level."""
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(1, -1).double()
    win = torch.hann_window(CLICK_WINDOW, dtype=torch.float64)
    spec = torch.stft(x, CLICK_WINDOW, hop_length=CLICK_HOP, window=win, center=True, return_complex=True)[0]
    freqs = torch.linspace(0, sample_rate / 2, CLICK_WINDOW // 2 + 1, dtype=torch.float64)
    band = freqs >= CLICK_BAND_HZ
    power = spec[band].abs().pow(2).mean(0)  # (frames,) mean power per band bin
    # Uniform white noise in [-1, 1] (variance 1/3) gives E|X_k|² = Σ w² / 3 in every bin.
    reference = float(win.pow(2).sum()) / 3.0
    level = 10 * torch.log10(power / reference + 1e-20)
    times = torch.arange(level.shape[0], dtype=torch.float64) * CLICK_HOP / sample_rate
    return times.numpy(), level.numpy()


def click_threshold(level_db: np.ndarray) -> float:
    return max(float(np.median(level_db)) + CLICK_CONTRAST_DB, CLICK_FLOOR_DB)


class ClickCheck(NamedTuple):
    hits: int  # events with a detected click within EVENT_TOLERANCE_S
    events: int  # events checked
    false_alarms: int  # event-free windows in which a click was detected
    quiet_windows: int  # event-free windows checked


def detect_clicks(wave, sample_rate: int, event_times: list[float]) -> ClickCheck:
    """Check each event time for a click within ±EVENT_TOLERANCE_S; count detections in event-free windows.

    Event-free windows are the 2·tolerance-wide windows tiling the clip that lie at least 2·tolerance from
    every event (a click rings for ~40 ms).
    """
    times, level = high_band_db(wave, sample_rate)
    thr = click_threshold(level)
    duration = len(np.asarray(wave).reshape(-1)) / sample_rate
    events = [t for t in event_times if 0 <= t < duration]
    hits = 0
    for t in events:
        sel = np.abs(times - t) <= EVENT_TOLERANCE_S
        hits += bool(sel.any() and level[sel].max() >= thr)
    false_alarms = quiet = 0
    width = 2 * EVENT_TOLERANCE_S
    for k in range(int(duration // width)):
        lo, hi = k * width, (k + 1) * width
        if any(lo - width <= t <= hi + width for t in events):
            continue
        sel = (times >= lo) & (times < hi)
        quiet += 1
        false_alarms += bool(sel.any() and level[sel].max() >= thr)
    return ClickCheck(hits, len(events), false_alarms, quiet)


def event_times(sample) -> list[float]:
    """Bounce times (s) of a synthetic sample (``meta["attributes"]["events"]``); [] for other data."""
    attrs = (sample.meta or {}).get("attributes") or {}
    out = []
    for ev in attrs.get("events", []):
        if "time" in ev:
            out.append(float(ev["time"]))
        elif "frame" in ev:
            out.append(float(ev["frame"]) / float(sample.fps))
    return out


def is_synthetic(sample) -> bool:
    return "attributes" in (sample.meta or {})


# ---------------------------------------------------------------------------------------------- evaluation
class _Tally:
    """What ``evaluate`` accumulates over its batches, and the report made from it."""

    def __init__(self, model, device: torch.device, wav_dir: str | Path | None):
        self.model, self.device, self.wav_dir = model, device, wav_dir
        self.sr, self.levels = model.config.sample_rate, model.config.num_levels
        self.snr_by_levels: list[list[float]] = [[] for _ in range(self.levels)]
        self.mels: list[float] = []
        self.codes: list[torch.Tensor] = []
        self.keys: list[str] = []
        self.clicks = {"original": [0, 0, 0, 0], "reconstruction": [0, 0, 0, 0]}  # hits, events, fa, quiet
        self.bands = {"original": 0.0, "reconstruction": 0.0}
        self.silent = self.written = self.count = 0
        self.encode_s = self.audio_s = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def add(self, batch: list) -> None:
        """Encode and decode one batch of samples with sound and measure it."""
        from videopoet.eval.metrics import multiscale_mel_distance

        wave = torch.stack([torch.from_numpy(np.clip(np.asarray(s.audio, np.float32), -1, 1)) for s in batch])
        wave = wave[:, None].to(self.device)  # (B, N) → (B, 1, N)
        n = wave.shape[-1]
        self._sync()
        t = time.time()
        codes = self.model.encode(wave)
        recon = self.model.decode(codes, length=n)
        self._sync()
        self.encode_s += time.time() - t
        self.audio_s += wave.shape[0] * n / self.sr
        self.codes.append(codes.cpu())
        wave_c, recon_c = wave.cpu(), recon.cpu()
        self.mels.extend(multiscale_mel_distance(recon_c, wave_c, sample_rate=self.sr).tolist())
        self.bands["original"] = self.bands["original"] + band_power(wave_c[:, 0], self.sr)
        self.bands["reconstruction"] = self.bands["reconstruction"] + band_power(recon_c[:, 0], self.sr)
        self._level_snrs(codes, wave_c, recon_c)
        for i, sample in enumerate(batch):
            self._clip(sample, wave_c[i, 0], recon_c[i, 0])
        self.count += len(batch)

    def _level_snrs(self, codes, wave_c, recon_c) -> None:
        """SI-SNR of the non-silent clips decoded from the first 1..K levels."""
        from videopoet.eval.metrics import si_snr

        loud = wave_c.abs().amax(dim=(1, 2)) >= SILENT_PEAK  # (B,)
        self.silent += int((~loud).sum())
        n = wave_c.shape[-1]
        for k in range(self.levels):
            y = recon_c if k == self.levels - 1 else self.model.decode(codes[:, : k + 1], length=n).cpu()
            self.snr_by_levels[k].extend(si_snr(y[:, 0], wave_c[:, 0])[loud].tolist())

    def _clip(self, sample, original: torch.Tensor, recon: torch.Tensor) -> None:
        """One clip's bounce clicks (synthetic clips) and, for the first few, its WAVs."""
        self.keys.append(sample.key)
        if is_synthetic(sample):
            events = event_times(sample)
            for name, sig in (("original", original), ("reconstruction", recon)):
                c = detect_clicks(sig.numpy(), self.sr, events)
                acc = self.clicks[name]
                acc[0], acc[1] = acc[0] + c.hits, acc[1] + c.events
                acc[2], acc[3] = acc[2] + c.false_alarms, acc[3] + c.quiet_windows
        if self.wav_dir is not None and self.written < NUM_WAV_EXAMPLES:
            Path(self.wav_dir).mkdir(parents=True, exist_ok=True)
            write_wav(Path(self.wav_dir) / f"clip{self.written}_original.wav", original.numpy(), self.sr)
            write_wav(Path(self.wav_dir) / f"clip{self.written}_reconstruction.wav", recon.numpy(), self.sr)
            self.written += 1

    def _click_report(self) -> dict[str, Any]:
        def rate(hits, total):
            return hits / total if total else float("nan")

        return {
            name: {
                "events": acc[1],
                "detected": acc[0],
                "detection_rate": rate(acc[0], acc[1]),
                "quiet_windows": acc[3],
                "false_alarm_rate": rate(acc[2], acc[3]),
            }
            for name, acc in self.clicks.items()
        }

    def report(self, skipped: list[str], wall_s: float) -> dict[str, Any]:
        from videopoet.eval.metrics import rvq_codebook_usage

        cfg, last = self.model.config, self.snr_by_levels[-1]
        codes = torch.cat(self.codes)  # (clips, K, F)
        usage = rvq_codebook_usage(codes, cfg.codebook_size)
        snr_means = [float(np.mean(v)) if v else float("nan") for v in self.snr_by_levels]
        return {
            "clips": self.count,
            "silent_clips": self.silent,
            "skipped": len(skipped),
            "skip_reasons": skipped[:20],
            "si_snr_db": snr_means[-1],
            "si_snr_db_std": float(np.std(last)) if last else float("nan"),
            "si_snr_db_by_levels": {str(k + 1): v for k, v in enumerate(snr_means)},
            "mel_distance": float(np.mean(self.mels)),
            "codebook_usage": [round(u["usage"], 4) for u in usage],
            "codebook_entropy_bits": [round(u["entropy_bits"], 3) for u in usage],
            "codebook_perplexity": [round(u["perplexity"], 1) for u in usage],
            "frames_counted": int(codes.shape[0] * codes.shape[2]),
            "bitrate_bps": cfg.bitrate,
            "frame_rate_hz": cfg.frame_rate,
            "levels": self.levels,
            "codebook_size": cfg.codebook_size,
            "bounce_clicks": self._click_report(),
            "band_levels": {
                "band_hz": BAND_HZ,
                **{
                    name: [round(10 * math.log10(float(p) / self.count + 1e-20), 1) for p in total]
                    for name, total in self.bands.items()
                },
            },
            "codec_seconds": round(self.encode_s, 3),
            "audio_seconds": round(self.audio_s, 3),
            "wall_seconds": round(wall_s, 2),
            "keys": self.keys[:10],
        }


def _unusable(model):
    """The ``check`` of ``readable_items`` for the codec: why a sample cannot be measured (None: it can);
    audio at another sample rate is a UserError (the data, not one clip, is wrong)."""
    sr = model.config.sample_rate

    def check(sample) -> str | None:
        if not sample.has_audio:
            return f"{sample.key}: no audio track"
        if sample.sample_rate != sr:
            raise UserError(f"{sample.key}: audio at {sample.sample_rate} Hz; the codec expects {sr} Hz")
        if len(sample.audio) < model.hop:
            return f"{sample.key}: only {len(sample.audio)} samples"
        return None

    return check


def evaluate(
    model,
    dataset,
    *,
    num: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: bool = False,
    wav_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Encode/decode up to ``num`` clips with sound from ``dataset`` and measure them (see module doc)."""
    from tqdm import tqdm

    from videopoet.data.datasets import readable_items

    device = torch.device(device)
    tally = _Tally(model.to(device).eval(), device, wav_dir)
    skipped: list[str] = []
    t0 = time.time()
    usable = readable_items(dataset, range(len(dataset)), log=skipped.append, check=_unusable(model))
    samples = (sample for _, sample in itertools.islice(usable, max(num, 0)))  # stops before item num + 1
    show = progress and sys.stderr.isatty()
    with tqdm(total=num, desc="eval audio", unit="clip", disable=not show) as bar:
        for batch in iter(lambda: list(itertools.islice(samples, batch_size)), []):
            tally.add(batch)
            bar.update(len(batch))
    if tally.count == 0:
        raise UserError("no clip with sound could be read from the data; check --data (see the skip reasons)")
    return tally.report(skipped, time.time() - t0)


def _notes(metrics: dict[str, Any], data: str) -> list[str]:
    """The report's sentences: what was measured, the bitrate, the bounce clicks, the band levels."""
    bc = metrics["bounce_clicks"]
    notes = [
        f"{metrics['clips']} clips of {CLIP_FRAMES / 8:g} s from `{data}` "
        f"({metrics['silent_clips']} silent, left out of SI-SNR); codebook usage counted over "
        f"{metrics['frames_counted']} frames.",
        f"Bitrate {metrics['bitrate_bps']:g} bit/s = {metrics['levels']} levels × "
        f"log2({metrics['codebook_size']}) bits × {metrics['frame_rate_hz']:g} frames/s.",
    ]
    if bc["original"]["events"]:
        notes.append(
            f"Bounce clicks within ±{EVENT_TOLERANCE_S * 1000:.0f} ms of {bc['original']['events']} events: "
            f"detected in {bc['original']['detection_rate']:.0%} of originals and "
            f"{bc['reconstruction']['detection_rate']:.0%} of reconstructions; false alarms in event-free "
            f"windows {bc['original']['false_alarm_rate']:.0%} / "
            f"{bc['reconstruction']['false_alarm_rate']:.0%}. Detector: energy above "
            f"{CLICK_BAND_HZ / 1000:g} kHz, {CLICK_CONTRAST_DB:g} dB over the clip median."
        )
    bl = metrics["band_levels"]
    width = bl["band_hz"] / 1000
    notes.append(
        "Mean power per band, original → reconstruction (dB): "
        + "; ".join(
            f"{k * width:g}–{(k + 1) * width:g} kHz {a:.1f} → {b:.1f}"
            for k, (a, b) in enumerate(zip(bl["original"], bl["reconstruction"]))
        )
        + "."
    )
    return notes


def _band_chart(out: Path, bl: dict[str, Any]) -> list:
    """The band-level bar chart as the report's one image ([] without pillow)."""
    from videopoet.eval.report import bar_chart

    width, floor = bl["band_hz"] / 1000, BAND_CHART_FLOOR_DB
    bands = {
        name: {
            f"{k * width:g}-{(k + 1) * width:g}k": max(0.0, level - floor) for k, level in enumerate(bl[name])
        }
        for name in ("original", "reconstruction")
    }
    title = f"mean power per band, dB above {floor:g} dB"
    try:
        return [
            ("power per band", bar_chart(out.parent / f"{out.name}_bands.png", bands, title=title, ymax=None))
        ]
    except ImportError:  # pillow (the media extra) draws the chart; the numbers are in the JSON either way
        log.info("pillow is not installed: no band chart")
        return []


def main(args) -> int:
    from videopoet.data.datasets import open_dataset
    from videopoet.device import pick_device
    from videopoet.eval.report import check_report, write_report
    from videopoet.tokenizers.audio import AudioTokenizer

    out = Path(args.out)
    wav_dir = out.parent / f"{out.name}_samples"
    wavs = [
        wav_dir / f"clip{i}_{kind}.wav"
        for i in range(NUM_WAV_EXAMPLES)
        for kind in ("original", "reconstruction")
    ]
    check_report(
        out, [out.parent / f"{out.name}_bands.png", *wavs], overwrite=getattr(args, "overwrite", False)
    )
    device = pick_device(args.device)
    if not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: not a directory (expected config.json + model.safetensors)")
    model = AudioTokenizer.from_pretrained(args.model, device=device)
    ds = open_dataset(
        args.data,
        frames=CLIP_FRAMES,
        width=PICTURE_SIZE,
        height=PICTURE_SIZE,
        sample_rate=model.config.sample_rate,
    )
    metrics = evaluate(
        model, ds, num=args.num, batch_size=args.batch_size, device=device, progress=True, wav_dir=wav_dir
    )
    metrics["model"] = str(args.model)
    metrics["data"] = str(args.data)
    metrics["device"] = str(device)
    notes, images = _notes(metrics, args.data), _band_chart(out, metrics["band_levels"])
    json_path, md_path = write_report(out, "Audio codec evaluation", metrics, images=images, notes=notes)
    print(
        f"SI-SNR {metrics['si_snr_db']:.2f} dB, mel distance {metrics['mel_distance']:.3f}, "
        f"level-1 usage {metrics['codebook_usage'][0]:.1%}, {metrics['bitrate_bps']:g} bit/s "
        f"→ {json_path}, {md_path}"
    )
    if math.isnan(metrics["si_snr_db"]):
        log.warning("every evaluated clip was silent; SI-SNR is undefined")
    return 0
