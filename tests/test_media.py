"""Media I/O: mp4, GIF and WAV round trips, audio of any layout, clip conforming, clear errors."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from videopoet.data import media
from videopoet.data.media import MediaError, VideoData
from videopoet.eval.metrics import frames_psnr

av = pytest.importorskip("av")
PIL = pytest.importorskip("PIL")
pytest.importorskip("scipy")


def smooth_pattern(t: int, h: int, w: int) -> np.ndarray:
    """uint8 (T, H, W, 3): slow sinusoids that drift over time (what H.264 codes well)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for k in range(t):
        p = k / max(t, 1)
        out.append(
            np.stack(
                [np.sin(2 * np.pi * (x + p)), np.sin(2 * np.pi * (y - p)), np.cos(2 * np.pi * (x + y))], -1
            )
        )
    return (127.5 + 110 * np.stack(out)).astype(np.uint8)


def tone(n: int, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def test_mp4_round_trip_frames_and_audio(tmp_path):
    frames = smooth_pattern(17, 64, 96)
    audio = tone(34000, 16000)
    path = tmp_path / "clip.mp4"
    media.write_mp4(path, frames, 8, audio, 16000)
    data = media.read_video(path)
    assert data.frames.shape == frames.shape and data.frames.dtype == np.uint8
    assert data.fps == pytest.approx(8.0)
    np.testing.assert_allclose(data.times, np.arange(17) / 8, atol=1e-6)
    assert frames_psnr(data.frames, frames) > 30
    # AAC is lossy but keeps the waveform; the encoder's padding must not come back.
    assert data.sample_rate == 16000 and data.audio.dtype == np.float32
    assert data.audio.shape == (34000,)
    assert np.corrcoef(data.audio, audio)[0, 1] > 0.99
    # The file is an H.264 yuv420p + AAC mp4 with its index first (browsers stream it).
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac"
    raw = path.read_bytes()
    assert 0 <= raw.find(b"moov") < raw.find(b"mdat")
    assert not list(tmp_path.glob(".*")), "temporary file left behind"


def test_mp4_without_audio_and_in_memory():
    frames = smooth_pattern(5, 64, 64)
    blob = media.encode_mp4(frames, 12.5)
    data = media.read_video(blob)
    assert data.audio is None and data.sample_rate == 0
    assert data.frames.shape == frames.shape
    assert data.fps == pytest.approx(12.5)
    assert frames_psnr(data.frames, frames) > 30
    data2 = media.read_video(io.BytesIO(blob))
    np.testing.assert_array_equal(data2.frames, data.frames)


def test_odd_sizes_error_or_pad(tmp_path):
    frames = smooth_pattern(3, 33, 40)
    with pytest.raises(ValueError, match="even width and height"):
        media.write_mp4(tmp_path / "odd.mp4", frames, 8)
    media.write_mp4(tmp_path / "odd.mp4", frames, 8, pad_to_even=True)
    data = media.read_video(tmp_path / "odd.mp4")
    assert data.frames.shape == (3, 34, 40, 3)
    assert frames_psnr(data.frames[:, :33], frames) > 30


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 8, 8), np.uint8), "uint8 array of shape"),
        (np.zeros((4, 8, 8, 3), np.float32), "uint8 array of shape"),
        (np.zeros((0, 8, 8, 3), np.uint8), "must not be empty"),
    ],
)
def test_write_mp4_validates_frames(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        media.write_mp4(tmp_path / "x.mp4", bad, 8)


def test_write_mp4_validates_audio(tmp_path):
    frames = smooth_pattern(2, 16, 16)
    with pytest.raises(ValueError, match="audio must be"):
        media.write_mp4(tmp_path / "x.mp4", frames, 8, np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        media.write_mp4(tmp_path / "x.mp4", frames, 8, np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="fps"):
        media.write_mp4(tmp_path / "x.mp4", frames, 0)


def test_read_segment_aligns_frames_and_audio(tmp_path):
    frames = smooth_pattern(24, 64, 64)
    rng = np.random.default_rng(0)
    # Band-limited noise: any misalignment of the cut shows up as a drop in correlation.
    audio = np.convolve(rng.standard_normal(48000), np.ones(8) / 8, mode="same").astype(np.float32) * 0.3
    path = tmp_path / "seg.mp4"
    media.write_mp4(path, frames, 8, audio, 16000)
    seg = media.read_video(path, start=1.0, duration=1.0)
    np.testing.assert_allclose(seg.times, 1.0 + np.arange(8) / 8, atol=1e-6)
    assert frames_psnr(seg.frames, frames[8:16]) > 30
    assert seg.start == 1.0 and seg.audio.shape == (16000,)
    assert np.corrcoef(seg.audio, audio[16000:32000])[0, 1] > 0.9
    # One sample of misalignment would be visible against the true neighbour windows.
    for shift in (-40, 40):
        assert np.corrcoef(seg.audio, audio[16000 + shift : 32000 + shift])[0, 1] < 0.8
    with pytest.raises(MediaError, match="past the end"):
        media.read_video(path, start=10.0)


def _write_stereo(path, frames, fps, left, right, rate, fmt="fltp", codec="aac"):
    """An mp4 with two-channel audio (write_mp4 only writes mono)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=Fraction(fps))
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = c.add_stream(codec, rate=rate)
        a.layout = "stereo"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode())
        stereo = np.stack([left, right]).astype(np.float32)  # (2, N) planar
        for s in range(0, stereo.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, s : s + 1024]), format=fmt, layout="stereo"
            )
            f.sample_rate, f.pts = rate, s
            c.mux(a.encode(f))
        c.mux(a.encode())


def test_stereo_44k_audio_becomes_mono_16k(tmp_path):
    rate = 44100
    n = int(2.0 * rate)
    left, right = tone(n, rate, 300.0, 0.4), tone(n, rate, 700.0, 0.4)
    path = tmp_path / "stereo.mp4"
    _write_stereo(path, smooth_pattern(20, 32, 32), 10, left, right, rate)
    native = media.read_video(path)
    assert native.sample_rate == rate and native.audio.ndim == 1
    assert np.corrcoef(native.audio, (left + right) / 2)[0, 1] > 0.99
    data = media.read_video(path, sample_rate=16000)
    assert data.sample_rate == 16000 and data.audio.shape == (32000,)
    expected = (tone(32000, 16000, 300.0, 0.4) + tone(32000, 16000, 700.0, 0.4)) / 2
    assert np.corrcoef(data.audio, expected)[0, 1] > 0.99
    # Averaging (not summing) the channels keeps the level.
    rms = float(np.sqrt(np.mean(data.audio**2)))
    assert rms == pytest.approx(float(np.sqrt(np.mean(expected**2))), rel=0.1)


def _bad_files(tmp_path):
    good = tmp_path / "good.mp4"
    media.write_mp4(good, smooth_pattern(17, 32, 32), 8, tone(34000, 16000), 16000)
    raw = good.read_bytes()
    plain = media.encode_mp4(smooth_pattern(17, 32, 32), 8)  # index at the end
    files = {
        "missing.mp4": None,
        "empty.mp4": b"",
        "random.mp4": np.random.default_rng(1).bytes(4096),
        "text.mp4": b"this is a caption, not a video\n" * 20,
        "truncated_half.mp4": raw[: len(raw) // 2],
        "truncated_head.mp4": raw[:1500],
        "truncated_noindex.mp4": plain[: len(plain) // 2],
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    return [tmp_path / n for n in files]


def test_bad_files_raise_one_line_media_errors(tmp_path):
    for path in _bad_files(tmp_path):
        for fn in (media.read_video, media.probe_video):
            with pytest.raises(MediaError) as info:
                fn(path)
            msg = str(info.value)
            assert msg.startswith(str(path)) and "\n" not in msg, msg
            assert isinstance(info.value, ValueError)
    assert "no such file" in str(pytest.raises(MediaError, media.read_video, tmp_path / "missing.mp4").value)
    assert "empty file" in str(pytest.raises(MediaError, media.read_video, tmp_path / "empty.mp4").value)
    assert "truncated" in str(
        pytest.raises(MediaError, media.probe_video, tmp_path / "truncated_half.mp4").value
    )


def test_probe_reports_header(tmp_path):
    path = tmp_path / "p.mp4"
    media.write_mp4(path, smooth_pattern(30, 48, 64), 12, tone(40000, 16000), 16000)
    info = media.probe_video(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(12) and info.num_frames == 30
    assert info.duration == pytest.approx(2.5, abs=0.01)
    assert info.has_audio and info.sample_rate == 16000 and info.codec == "h264"


def test_wav_round_trips(tmp_path):
    audio = (np.random.default_rng(2).uniform(-1, 1, 5000)).astype(np.float32)
    media.write_wav(tmp_path / "f.wav", audio, 22050, dtype="float32")
    back = media.read_wav(tmp_path / "f.wav")
    assert back.sample_rate == 22050 and back.channels == 1
    np.testing.assert_array_equal(back.audio, audio)
    media.write_wav(tmp_path / "i.wav", audio, 16000)
    back16 = media.read_wav(tmp_path / "i.wav")
    assert np.abs(back16.audio - audio).max() <= 0.5 / 32768 + 1e-7
    blob = media.encode_wav(audio, 16000)
    np.testing.assert_array_equal(media.read_wav(blob).audio, back16.audio)
    with pytest.raises(ValueError, match="dtype"):
        media.write_wav(tmp_path / "x.wav", audio, 16000, dtype="int8")


def test_read_wav_any_layout(tmp_path):
    from scipy.io import wavfile

    stereo = np.stack([np.full(100, 16384, np.int16), np.full(100, -8192, np.int16)], 1)  # (N, 2)
    wavfile.write(tmp_path / "s.wav", 8000, stereo)
    back = media.read_wav(tmp_path / "s.wav")
    assert back.channels == 2 and back.audio.shape == (100,)
    np.testing.assert_allclose(back.audio, (0.5 - 0.25) / 2)
    wavfile.write(tmp_path / "u8.wav", 8000, np.full(10, 192, np.uint8))
    np.testing.assert_allclose(media.read_wav(tmp_path / "u8.wav").audio, 0.5)
    (tmp_path / "bad.wav").write_bytes(b"RIFF but not really a wav file")
    with pytest.raises(MediaError, match="not a readable WAV"):
        media.read_wav(tmp_path / "bad.wav")
    with pytest.raises(MediaError, match="no such file"):
        media.read_wav(tmp_path / "nope.wav")


def test_gif_frames_and_timing(tmp_path):
    from PIL import Image

    frames = smooth_pattern(9, 24, 32)
    media.write_gif(tmp_path / "p.gif", frames, 8)
    with Image.open(tmp_path / "p.gif") as im:
        assert im.n_frames == 9 and im.size == (32, 24)
        # GIF delays are whole centiseconds: 12 and 13 alternate so that 8 frames still last one second.
        delays = []
        for k in range(9):
            im.seek(k)
            delays.append(im.info["duration"])
        assert set(delays) <= {120, 130} and sum(delays[:8]) == 1000
        im.seek(4)
        # A 256-colour palette keeps smooth colours close.
        assert frames_psnr(np.asarray(im.convert("RGB")), frames[4]) > 25


def test_resize_center_crop_keeps_the_centre():
    # 160x90 landscape with red side bands outside the central 90x90 square.
    frame = np.zeros((1, 90, 160, 3), np.uint8)
    frame[..., 1] = 200
    frame[:, :, :35, 0] = 255
    frame[:, :, 125:, 0] = 255
    out = media.resize_center_crop(frame, 64, 64)
    assert out.shape == (1, 64, 64, 3)
    assert out[..., 0].max() < 30 and out[..., 1].min() > 180
    # Portrait target from landscape keeps the middle columns only.
    grad = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, None, :, None], (2, 90, 160, 3)).copy()
    tall = media.resize_center_crop(grad, 16, 28)
    assert tall.shape == (2, 28, 16, 3)
    assert 50 < tall[0, 0, 0, 0] < 60 and 100 < tall[0, 0, -1, 0] < 110
    same = smooth_pattern(2, 16, 16)
    assert media.resize_center_crop(same, 16, 16) is same


def test_resample_audio_keeps_pitch():
    x = tone(44100, 44100, 1000.0)
    y = media.resample_audio(x, 44100, 16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    peak = np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y)
    assert peak == pytest.approx(1000.0, abs=2)


def test_conform_clip_picks_nearest_frames_and_cuts_audio():
    src_fps = 30.0
    n = 90
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0] = np.arange(n, dtype=np.uint8)[:, None, None]  # frame index in the red channel
    times = np.arange(n) / src_fps
    audio = np.arange(3 * 1000, dtype=np.float32) / 1000  # 1 kHz "ramp": value = time in seconds
    video = VideoData(frames, src_fps, audio, 1000, times, 0.0)
    clip = media.conform_clip(video, start=0.5, num_frames=17, fps=8, width=8, height=8, sample_rate=1000)
    targets = 0.5 + np.arange(17) / 8
    expected = np.rint(targets * src_fps - 1e-9).astype(int)
    np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], expected)
    assert clip.has_audio and clip.audio.shape == (2125,)
    np.testing.assert_allclose(clip.audio[[0, 1000, 2124]], [0.5, 1.5, 2.624], atol=1e-6)
    with pytest.raises(MediaError, match="not covered"):
        media.conform_clip(video, start=1.5, num_frames=17, fps=8, width=8, height=8, sample_rate=1000)
    silent = media.conform_clip(
        video._replace(audio=None), start=0.0, num_frames=4, fps=8, width=4, height=4, sample_rate=16000
    )
    assert not silent.has_audio and silent.audio.shape == (8000,) and not silent.audio.any()
    assert silent.frames.shape == (4, 4, 4, 3)


def test_display_rotation_is_applied(tmp_path):
    """Phone videos store landscape pixels plus a display rotation; readers must return them upright."""
    frames = np.zeros((3, 32, 64, 3), np.uint8)  # stored 64 wide x 32 tall
    frames[:, :8, :8, 0] = 255  # red marker in the stored top-left corner
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 64, 32, "yuv420p"
        v.set_display_rotation(90)  # shown turned a quarter counter-clockwise
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode())
    data = media.read_video(path)
    assert data.frames.shape == (3, 64, 32, 3)
    # A counter-clockwise quarter turn carries the top-left corner to the bottom-left.
    assert data.frames[0, -8:, :8, 0].mean() > 200 and data.frames[0, :8, :8, 0].mean() < 50
    info = media.probe_video(path)
    assert (info.width, info.height) == (32, 64)
