"""Audio codec training (the recipe on the training engine): exact resume, non-finite steps skipped and
counted, CLI train + eval end to end, metrics."""

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import videopoet.train.audio_tokenizer as audio_train
from videopoet import cli
from videopoet.config import ConfigError, from_dict, load_config
from videopoet.data.media import read_wav, write_wav
from videopoet.dsp import mel_filterbank, mel_to_hz
from videopoet.eval.audio import detect_clicks, event_times
from videopoet.eval.metrics import multiscale_mel_distance, rvq_codebook_usage, si_snr
from videopoet.eval.report import read_jsonl
from videopoet.train.audio_tokenizer import AudioTokenizerRecipe, AudioTrainConfig, CropAudio
from videopoet.train.loop import EXIT_NONFINITE, Engine

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _cfg(tmp_path, name="run", **kw) -> AudioTrainConfig:
    """A debug run's config; nested tables merge into the defaults here (``gan={"start": 1}``)."""
    base = dict(
        out_dir=str(tmp_path / name),
        preset="debug",
        device="cpu",
        max_steps=4,
        batch_size=2,
        segment_samples=1600,
        eval_clips=1,
        ckpt_every=2,
        eval_every=0,
        sample_every=0,
        warmup_steps=2,
        gan={"start": 2, "model": {"channels": 4}},
    )
    return from_dict(AudioTrainConfig, _merge(base, kw))


def _recipe(cfg: AudioTrainConfig) -> AudioTokenizerRecipe:
    return AudioTokenizerRecipe(cfg, Engine(cfg))


def _run(cfg: AudioTrainConfig, **kw) -> tuple[int, AudioTokenizerRecipe]:
    """Train (or continue, ``resume=True``) → (exit status, the recipe)."""
    engine = Engine(cfg)
    recipe = AudioTokenizerRecipe(cfg, engine)
    return engine.run(recipe, progress=False, **kw), recipe


def _save_trained_debug_codec(directory, *, seed: int):
    """A debug codec saved as after training (codebooks marked initialised: no k-means when loaded)."""
    from videopoet.tokenizers.audio import AudioTokenizer

    torch.manual_seed(seed)
    codec = AudioTokenizer.from_preset("debug")
    for level in codec.quantizer.levels:
        level.initted.fill_(True)
    codec.save_pretrained(directory)
    return codec


def _rows(run_dir):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in _rows(run_dir)}


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_init_from_copies_weights_and_rejects_other_architectures(tmp_path):
    from videopoet.tokenizers.audio import AudioTokenizer

    _save_trained_debug_codec(tmp_path / "src", seed=3)
    source = AudioTokenizer.from_pretrained(tmp_path / "src")
    recipe = _recipe(_cfg(tmp_path, init_from=str(tmp_path / "src")))
    for k, v in source.state_dict().items():
        assert torch.equal(recipe.model.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="different architecture"):
        _recipe(_cfg(tmp_path, "b", preset="tiny", init_from=str(tmp_path / "src")))


def test_resume_gives_identical_losses(tmp_path):
    assert _run(_cfg(tmp_path, "a"))[0] == 0
    assert _run(_cfg(tmp_path, "b", stop_after_steps=2))[0] == 0
    assert not (tmp_path / "b" / "final").exists()  # paused, not finished
    assert _run(_cfg(tmp_path, "b"), resume=True)[0] == 0
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert set(a) == {1, 2, 3, 4} and a == b  # steps 3-4 (with the GAN on) match bit for bit
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert wa["quantizer.levels.0.embed"].dtype == torch.float16  # shipped weights are fp16


def _nan_at(monkeypatch, calls: set[int] | None):
    """Make the reconstruction loss NaN at these calls (0-based; one call per training step; None = all)."""
    real = audio_train.reconstruction_loss
    count = [0]

    def poisoned(*args, **kwargs):
        loss, m = real(*args, **kwargs)
        n, count[0] = count[0], count[0] + 1
        return (loss * float("nan"), m) if calls is None or n in calls else (loss, m)

    monkeypatch.setattr(audio_train, "reconstruction_loss", poisoned)


def test_a_nan_step_is_skipped_and_counted(tmp_path, monkeypatch):
    _nan_at(monkeypatch, {2})  # the third step (metrics row 3), with the GAN on
    cfg = _cfg(tmp_path, max_steps=5)
    engine = Engine(cfg)
    recipe = AudioTokenizerRecipe(cfg, engine)
    before, after = {}, {}
    train_step = recipe.train_step

    def recorded(wave, step):
        before[step] = _params(recipe.model)
        row = train_step(wave, step)
        after[step] = _params(recipe.model)
        return row

    recipe.train_step = recorded
    assert engine.run(recipe, progress=False) == 0
    rows = {r["step"]: r for r in _rows(tmp_path / "run")}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert rows[3]["nonfinite"] is True and rows[3]["loss"] == "nan"
    assert [rows[s]["nonfinite_total"] for s in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 1]
    assert all("nonfinite" not in rows[s] and math.isfinite(rows[s]["loss"]) for s in (1, 2, 4, 5))
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])  # the update was skipped
    assert any(not torch.equal(before[3][k], after[3][k]) for k in before[3])  # the next one was not
    assert math.isfinite(rows[3]["d_loss"])  # the discriminator still learned from the finite recon
    end = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert end["event"] == "end" and end["exported"]
    final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert state["nonfinite_total"] == 1  # the count is resumed with the run
    for ckpt in (tmp_path / "run" / "checkpoints").glob("step_*"):  # never a checkpoint of NaN weights
        for group in ("model", "ema", "disc"):
            for v in load_file(str(ckpt / f"{group}.safetensors")).values():
                assert not v.is_floating_point() or torch.isfinite(v).all()


def test_nonfinite_steps_in_a_row_stop_the_run(tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, None)
    cfg = _cfg(tmp_path, max_steps=6, max_nonfinite=2, ckpt_every=0, gan={"start": 100})
    assert audio_train.train(cfg, progress=False) == EXIT_NONFINITE == 3
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("videopoet:")]
    assert len(said) == 1 and "2 non-finite steps in a row" in said[0], said
    assert "--overwrite" in said[0] and "None" not in said[0]  # no checkpoint to resume from yet
    run = tmp_path / "run"
    assert not (run / "final").exists()
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["nonfinite_total"] for r in rows if "loss" in r] == [1, 2]  # stopped after the second
    assert rows[-1]["event"] == "stopped" and rows[-1]["reason"] == "nonfinite"
    assert rows[-1]["message"] == said[0].removeprefix("videopoet: ")


def test_cli_train_then_eval_end_to_end(tmp_path, capsys):
    toml = tmp_path / "audio.toml"
    toml.write_text(
        f'out_dir = "{(tmp_path / "cli").as_posix()}"\npreset = "debug"\nmax_steps = 3\nbatch_size = 2\n'
        "segment_samples = 1600\neval_clips = 1\nckpt_every = 2\neval_every = 2\nsample_every = 2\n"
        'device = "cpu"\n[gan]\nstart = 1\nmodel = { channels = 4 }\n'
    )
    assert cli.main(["train", "audio-tokenizer", "--config", str(toml)]) == 0
    run = tmp_path / "cli"
    assert (run / "final" / "config.json").is_file() and (run / "final" / "train_eval.json").is_file()
    assert json.loads((run / "train_config.json").read_text())["gan"]["model"]["channels"] == 4
    assert json.loads((run / "final" / "train_eval.json").read_text())["step"] == 3
    for step in ("step_00000002", "step_00000003"):  # the cadence, then the end of the run
        names = sorted(p.name for p in (run / "samples" / step).iterdir())
        assert names[:2] == ["eval0.wav", "eval0_original.wav"], names
    rows = read_jsonl(run / "metrics.jsonl")
    evaluated = [r for r in rows if "val_si_snr" in r]
    assert [r["step"] for r in evaluated if "loss" in r] == [2]  # merged into the step's row
    assert evaluated[-1]["event"] == "end" and "val_usage" in evaluated[-1]
    assert not any(r.get("event") == "eval" for r in rows)
    assert any("adv" in r and "feat" in r for r in rows)  # the GAN switched on after gan.start
    out = tmp_path / "report"
    argv = ["eval", "audio", "--model", str(run / "final"), "--data", "synthetic:heldout:3", "--num", "3"]
    assert cli.main(argv + ["--batch-size", "2", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["clips"] == 3 and report["bitrate_bps"] == 4 * 6 * 50  # debug: 4 levels × 64 codes
    assert len(report["codebook_usage"]) == 4 and 0 < report["codebook_usage"][0] <= 1
    assert set(report["si_snr_db_by_levels"]) == {"1", "2", "3", "4"}
    assert report["bounce_clicks"]["original"]["detection_rate"] == 1.0  # heldout:3 has bounces
    bands = report["band_levels"]
    assert bands["band_hz"] == 1000 and len(bands["original"]) == len(bands["reconstruction"]) == 8
    if importlib.util.find_spec("PIL") is not None:  # the band chart needs pillow (the media extra)
        assert (tmp_path / "report_bands.png").is_file()
        assert "report_bands.png" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".md").read_text().startswith("# Audio codec evaluation")
    # a used out_dir (no --resume / --overwrite) is a one-line user error, not a traceback
    capsys.readouterr()
    assert cli.main(["train", "audio-tokenizer", "--config", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err, err


def test_old_keys_name_their_new_place(tmp_path, capsys):
    renamed = {"w_adv=1": '"gan.weight"', "steps=4": '"max_steps"', "val_clips=2": '"eval_clips"'}
    for old, new in renamed.items():
        assert cli.main(["train", "audio-tokenizer", "--set", f"out_dir={tmp_path / 'x'}", "--set", old]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f'"{old.split("=")[0]}"' in err and new in err, err
    toml = tmp_path / "old.toml"
    toml.write_text('preset = "debug"\nguard_patience = 3\n')
    assert cli.main(["train", "audio-tokenizer", "--config", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_nonfinite" in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("audio_tokenizer_*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    cfg = load_config(AudioTrainConfig, path)
    assert cfg.preset == path.stem.removeprefix("audio_tokenizer_")
    assert cfg.gan.start < cfg.max_steps  # the GAN phase happens


# ---------------------------------------------------------------------------------------------- metrics
def test_si_snr_known_values():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 8000, generator=g)
    ref = ref - ref.mean(-1, keepdim=True)
    noise = torch.randn(3, 8000, generator=g)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref  # ⟂ ref
    noise = noise / noise.norm(dim=-1, keepdim=True) * ref.norm(dim=-1, keepdim=True) * 10 ** (-20 / 20)
    torch.testing.assert_close(si_snr(ref + noise, ref), torch.full((3,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(si_snr(0.3 * (ref + noise) + 0.1, ref), si_snr(ref + noise, ref))  # invariant
    assert float(si_snr(-ref, ref).min()) > 60  # a sign flip is a scale of −1


def test_mel_filterbank_is_a_partition_of_unity():
    fb = mel_filterbank(1024, 40, 16000)
    assert fb.shape == (40, 513) and fb.min() >= 0 and fb.max() <= 1
    points = mel_to_hz(torch.linspace(0, 2595 * math.log10(1 + 8000 / 700), 42))
    freqs = torch.linspace(0, 8000, 513)
    inside = (freqs >= points[1]) & (freqs <= points[-2])
    torch.testing.assert_close(fb.sum(0)[inside], torch.ones(int(inside.sum())), atol=1e-5, rtol=0)
    # filter 20 peaks at the bin nearest its centre frequency
    assert abs(float(freqs[fb[20].argmax()]) - float(points[21])) <= 8000 / 512


def test_mel_distance_and_usage():
    t = torch.arange(16000) / 16000
    a = torch.sin(2 * math.pi * 440 * t)[None, None]
    assert float(multiscale_mel_distance(a, a)) == 0
    near = multiscale_mel_distance(a * 0.9, a)
    far = multiscale_mel_distance(torch.sin(2 * math.pi * 1000 * t)[None, None], a)
    assert 0 < float(near) < float(far)
    codes = torch.tensor([[[0, 1, 2, 3], [5, 5, 5, 5]]])  # level 1: 4 codes uniformly; level 2: one code
    usage = rvq_codebook_usage(codes, 8)
    assert usage[0]["usage"] == 0.5 and usage[0]["entropy_bits"] == pytest.approx(2.0)
    assert usage[1]["usage"] == 0.125 and usage[1]["entropy_bits"] == pytest.approx(0.0)


def test_click_detector_on_world_clips_and_lowpassed_audio():
    from videopoet.data.datasets import ClipFormat, SyntheticDataset

    ds = SyntheticDataset(split="heldout", fmt=ClipFormat(width=16, height=16))
    samples = [s for s in (ds[i] for i in range(6)) if event_times(s)][:2]
    assert samples, "the held-out split should contain bouncing objects"
    for s in samples:
        check = detect_clicks(s.audio, 16000, event_times(s))
        assert check.hits == check.events > 0 and check.false_alarms == 0
        # Remove everything above 4 kHz: the voices survive, the clicks' high band does not.
        spec = np.fft.rfft(s.audio)
        spec[np.fft.rfftfreq(len(s.audio), 1 / 16000) > 4000] = 0
        dull = np.fft.irfft(spec, len(s.audio)).astype(np.float32)
        assert detect_clicks(dull, 16000, event_times(s)).hits == 0
    # a click added at the wrong time is a false alarm, not a hit
    quiet = np.zeros(34000, np.float32)
    quiet[30000:30200] = np.random.default_rng(0).uniform(-0.5, 0.5, 200)
    check = detect_clicks(quiet, 16000, [0.5])
    assert check.hits == 0 and check.false_alarms == 1


def test_wav_round_trip(tmp_path):
    x = np.sin(np.linspace(0, 100, 4000)).astype(np.float32) * 0.8
    write_wav(tmp_path / "a.wav", x, 16000)  # stdlib 16-bit PCM: no scipy on the training path
    back = read_wav(tmp_path / "a.wav")
    assert back.sample_rate == 16000 and np.abs(x - back.audio).max() < 1e-4


def test_eval_reads_real_audio_from_mp4(tmp_path):
    pytest.importorskip("av")
    from videopoet.data.media import write_mp4
    from videopoet.tokenizers.audio import AudioTokenizer

    torch.manual_seed(0)
    AudioTokenizer.from_preset("debug").save_pretrained(tmp_path / "codec")
    folder = tmp_path / "videos"
    folder.mkdir()
    t = np.arange(48000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    frames = np.full((24, 32, 32, 3), 90, np.uint8)
    write_mp4(folder / "tone.mp4", frames, 8, audio, 16000)
    out = tmp_path / "mp4_report"
    argv = ["eval", "audio", "--model", str(tmp_path / "codec"), "--data", str(folder), "--num", "1"]
    assert cli.main(argv + ["--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["clips"] == 1 and report["silent_clips"] == 0
    assert report["frames_counted"] == 106  # one 17-frame clip = 34,000 samples → 106 frames
    assert report["bounce_clicks"]["original"]["events"] == 0  # real videos carry no bounce events
    wav = read_wav(tmp_path / "mp4_report_samples" / "clip0_original.wav")
    orig, sr = wav.audio, wav.sample_rate
    assert sr == 16000 and orig.shape == (34000,)
    assert (
        si_snr(torch.from_numpy(orig[2000:30000]), torch.from_numpy(audio[2000:30000])) > 10
    )  # AAC round trip


def _load_benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_on_cpu(tmp_path):
    bench = _load_benchmark("bench_audio_tokenizer")
    out = tmp_path / "bench.json"
    argv = [
        "--device",
        "cpu",
        "--preset",
        "debug",
        "--batch-sizes",
        "1,2",
        "--seconds",
        "0.25",
        "--iters",
        "1",
    ]
    train = ["--train", "--train-batch", "2", "--train-segment", "1280"]  # the recipe's train_step, timed
    bench.main(argv + train + ["--warmup", "0", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [r["batch"] for r in result["results"]] == [1, 2] and result["precision"] == "fp32"
    for r in result["results"]:
        assert r["real_time_factor"] > 0 and r["x_real_time"] == pytest.approx(1 / r["real_time_factor"])
    t = result["train"]
    assert t["batch"] == 2 and t["segment_samples"] == 1280
    for name in ("codec_only", "with_gan"):
        assert t[f"{name}_ms_per_step"] > 0 and t[f"{name}_steps_per_minute"] > 0


def test_training_runs_without_media_libraries(tmp_path):
    """The GPU box has neither av, scipy nor pillow: the training path must not import them."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    argv = ["train", "audio-tokenizer", "--config", str(root / "configs" / "audio_tokenizer_debug.toml")]
    for item in (f"out_dir={(tmp_path / 'run').as_posix()}", "max_steps=2", "eval_every=0"):
        argv += ["--set", item]
    code = (
        "import sys\n"
        "for m in ('av', 'scipy', 'PIL'):\n"
        "    sys.modules[m] = None\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from videopoet import cli\n"
        f"sys.exit(cli.main({argv!r}))\n"
    )
    env = {"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_highband_loss_sees_transients_not_low_tones():
    from videopoet.tokenizers.audio_losses import highband_loss

    sr, n = 16000, 16000
    t = torch.arange(n) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 500 * t)
    burst = torch.zeros(n)
    burst[8000:8640] = 0.5 * torch.rand(640, generator=torch.Generator().manual_seed(0)).sub(0.5).mul(2)
    kw = dict(sample_rate=sr, min_hz=4000.0)
    with_both = (tone + burst)[None, None]
    assert highband_loss(with_both, with_both, **kw) == 0
    assert highband_loss(burst[None, None], with_both, **kw) < 1e-3  # the tone lives below the band
    assert highband_loss(tone[None, None], with_both, **kw) > 10 * highband_loss(
        burst[None, None], with_both, **kw
    )


def test_decoder_only_training_keeps_the_codes(tmp_path):
    engine = Engine(cfg := _cfg(tmp_path, max_steps=2, train_decoder_only=True, loss={"highband": 10.0}))
    recipe = AudioTokenizerRecipe(cfg, engine)
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    assert engine.run(recipe, progress=False) == 0
    after = recipe.model.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.", "quantizer."))]
    tuned = [k for k in before if k.startswith("decoder.")]
    assert frozen and tuned
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # codebooks and encoder untouched
    assert any(not torch.equal(before[k], after[k]) for k in tuned)


def test_lowpass_keeps_the_band_below_the_cutoff_and_removes_the_rest():
    from videopoet.dsp import lowpass

    sr, n = 16000, 16000
    t = torch.arange(n) / sr
    low = 0.3 * torch.sin(2 * math.pi * 1000 * t)
    high = 0.2 * torch.sin(2 * math.pi * 7000 * t)
    out = lowpass((low + high)[None, None], 6000.0, sr)
    assert out.shape == (1, 1, n)
    assert torch.allclose(out[0, 0], low, atol=1e-3)
    with pytest.raises(ConfigError, match="wave_max_hz"):
        from_dict(AudioTrainConfig, {"loss": {"wave_max_hz": -1.0}})


def test_band_limited_phase_losses_ignore_noise_above_the_cutoff(tmp_path):
    """With wave_max_hz, waveform L1 and SI-SNR no longer punish high-band noise of the right loudness."""
    from videopoet.dsp import lowpass
    from videopoet.train.audio_tokenizer import si_snr_loss

    sr, n = 16000, 16000
    t = torch.arange(n) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    g = torch.Generator().manual_seed(0)

    def noise_band():  # uniform noise above 6.5 kHz: a click's broadband tail
        r = torch.rand(n, generator=g) - 0.5
        return r - lowpass(r, 6500.0, sr)

    target, guess = tone + noise_band(), tone + noise_band()
    full = si_snr_loss(guess[None, None], target[None, None])
    banded = si_snr_loss(lowpass(guess, 6000, sr)[None, None], lowpass(target, 6000, sr)[None, None])
    assert banded < full - 1.0  # more than 10 dB better once the unmatched-phase noise band is left out
    assert _run(_cfg(tmp_path, max_steps=2, loss={"wave_max_hz": 6000.0, "highband": 1.0}))[0] == 0
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "wave_l1" in r]
    assert len(rows) == 2 and all("highband" in r for r in rows)
    assert all(math.isfinite(r["wave_l1"]) and math.isfinite(r["neg_sisnr_db"]) for r in rows)


def test_transient_crops_hold_the_bounce_clicks():
    from videopoet.data.datasets import open_dataset

    base = open_dataset("synthetic:train", frames=17, width=16, height=16)
    with_events = [base[i] for i in range(40) if event_times(base[i])][:6]  # the clips with bounces
    assert with_events
    seg = 6400
    for fraction in (1.0, 0.0):
        crop_audio = CropAudio(seg, seed=0, transient_fraction=fraction)
        held = []
        for g, sample in enumerate(with_events):
            crop = crop_audio(sample, g)
            assert crop.shape == (1, seg) and crop.dtype == np.float32
            assert np.array_equal(crop, crop_audio(sample, g))  # hashed from (seed, position)
            audio = np.asarray(sample.audio, np.float32)
            starts = range(len(audio) - seg + 1)
            start = next(s for s in starts if np.array_equal(audio[s : s + seg], crop[0]))
            times = [t * 16000 - start for t in event_times(sample)]
            held.append(any(0 <= t < seg for t in times))
        if fraction == 1.0:
            assert all(held)  # every crop contains a bounce click
    short = dataclasses.replace(with_events[0], audio=np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="shorter than"):
        CropAudio(seg, seed=0)(short, 0)


def test_band_power_puts_a_tone_in_its_band():
    from videopoet.eval.audio import band_power

    t = torch.arange(16000) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * 2500 * t), 0.5 * torch.sin(2 * math.pi * 6200 * t)])
    p = band_power(wave, 16000)
    assert p.shape == (8,)
    assert int(p.argmax()) in (2, 6) and p[2] > 1e3 * p[0] and p[6] > 1e3 * p[4]


def test_click_diagnostics_script_runs(tmp_path):
    diag = _load_benchmark("audio_click_diagnostics")
    out = tmp_path / "diag.json"
    argv = ["--clips", "12", "--overfit", "snake", "--steps", "1", "--threads", "1", "--out", str(out)]
    assert diag.main(argv) == 0
    report = json.loads(out.read_text())
    lat = report["latents"]
    assert lat["events"] > 0 and 0 <= lat["heard_from_codes"] <= lat["events"]
    assert 0 <= lat["heard_from_latents"] <= lat["events"]
    (fit,) = report["overfit"]
    assert fit["activation"] == "snake" and fit["target_peak_db"] > fit["target_median_db"] + 30


def test_discriminator_scales_are_configurable(tmp_path):
    cfg = _cfg(tmp_path, max_steps=3, gan={"start": 1, "model": {"scales": [256, 128, 64]}})
    status, recipe = _run(cfg)
    assert [d.n_fft for d in recipe.disc.discs] == [256, 128, 64]
    assert recipe.disc.discs[0].out.in_channels == 4  # gan.model.channels from _cfg's table
    assert status == 0
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "d_loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["d_loss"]) for r in rows)
    with pytest.raises(ConfigError, match="gan.model.scales"):
        from_dict(AudioTrainConfig, {"gan": {"model": {"scales": [30]}}})


def test_init_from_gives_loaded_codes_a_grace_period(tmp_path):
    from videopoet.tokenizers.quantizers import RESTART_GRACE

    _save_trained_debug_codec(tmp_path / "src", seed=0)
    # the run's own dead-code threshold (0.2), not the saved one (0.05), sets the starting counts
    cfg = _cfg(tmp_path, max_steps=1, init_from=str(tmp_path / "src"), model={"dead_code_threshold": 0.2})
    recipe = _recipe(cfg)
    for level in recipe.model.quantizer.levels:
        count = RESTART_GRACE * 0.2
        assert torch.all(level.cluster_size == count)
        torch.testing.assert_close(level.embed_avg / count, level.embed)
    recipe.train_step(recipe.eval_wave.expand(2, -1, -1)[:, :, :1600], 0)
    assert sum(recipe.model.quantizer.last_restarts) == 0  # no loaded code dies on the first batch


def test_bad_model_override_is_a_config_error(tmp_path):
    from videopoet.config import ConfigError

    for bad in ({"quantizer_dropout": 2.0}, {"activation": "relu"}, {"no_such_field": 1}):
        with pytest.raises(ConfigError, match="model overrides"):
            _recipe(_cfg(tmp_path, model=bad))


def test_noise_envelope_loss_pulls_gains_to_the_band_envelope():
    from videopoet.tokenizers.audio_losses import noise_envelope_loss

    g = torch.Generator().manual_seed(0)
    n, up = 3200, 8
    wave = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(n) / 16000)  # a tone: nothing in 6.1–8 kHz
    burst = slice(1600, 1760)
    wave[burst] += 0.4 * torch.randn(160, generator=g)  # a broadband burst: loud in every band
    log_gains = torch.full((1, 2, n // up), math.log(1e-4), requires_grad=True)
    opt = torch.optim.Adam([log_gains], lr=0.1)
    first = None
    for _ in range(200):
        loss = noise_envelope_loss(log_gains, wave.reshape(1, 1, n), min_hz=6100.0, sample_rate=16000)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    rms = log_gains.detach().exp()[0]  # (2, L)
    inside, outside = rms[:, 1600 // up + 2 : 1760 // up - 2], rms[:, : 1500 // up]
    # white noise of RMS 0.4 puts ≈ 0.4·sqrt(950/8000) ≈ 0.14 in each 950 Hz band; the tone puts nothing
    assert inside.median() > 0.05 and outside.median() < 1e-3


def test_init_from_adds_a_noise_branch(tmp_path):
    src = _save_trained_debug_codec(tmp_path / "src", seed=1)
    cfg = _cfg(tmp_path, init_from=str(tmp_path / "src"), model={"noise_bands": 2}, max_steps=2)
    engine = Engine(cfg)
    recipe = AudioTokenizerRecipe(cfg, engine)
    mine = recipe.model.state_dict()
    assert torch.equal(mine["decoder.net.0.conv.bias"], src.state_dict()["decoder.net.0.conv.bias"])
    assert "decoder.noise.gain.conv.weight" in mine
    assert engine.run(recipe, progress=False) == 0
    logged = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert all("noise_env" in r and math.isfinite(r["noise_env"]) for r in logged)
