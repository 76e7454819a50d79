"""Media files in and out: mp4 (H.264 + AAC through PyAV), GIF (pillow), WAV (scipy), plus the two array
helpers every reader needs (resize + centre-crop, audio resampling).

Array conventions (the same as ``videopoet.data.sample.Sample``):
    frames  uint8 (T, H, W, 3) RGB
    audio   float32 (N,) mono in [-1, 1]
    times   float64 (T,) presentation time of each frame in seconds, 0 = the video stream's start

av, pillow and scipy are imported (through ``videopoet.errors.require``) inside the functions that need
them, so this module can be imported (for ``MediaError`` and the numpy helpers) on machines that have none
of them; using a function whose package is missing is one line naming ``pip install 'videopoet[media]'``.
Files written to a path appear atomically (``videopoet.outputs.atomic_path``).

Every failure to read a file (missing, empty, not a video, truncated, undecodable) raises ``MediaError``
with a one-line reason; PyAV's own exceptions never escape.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import wave
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from videopoet.errors import UserError, require
from videopoet.outputs import atomic_path, atomic_write_bytes

PathOrFile = str | os.PathLike | BinaryIO
Source = str | os.PathLike | bytes | BinaryIO

# AAC-LC encodes 1024 samples per frame; feeding whole frames keeps pts exact.
AAC_FRAME = 1024
# H.264 quality: CRF 18 is visually lossless on natural video and keeps > 35 dB on smooth synthetic frames.
DEFAULT_CRF = 18
# yuv420p is what browsers play; yuv444p keeps full-resolution colour (sharp saturated edges of the
# synthetic world lose ~10 dB PSNR to 4:2:0 chroma subsampling), for files that only training reads.
PIX_FMTS = ("yuv420p", "yuv444p")
# A decoded stream may end this many frame intervals before its header duration without being "truncated"
# (encoders round durations; B-frame reordering can drop the last timestamp).
TRUNCATION_SLACK_FRAMES = 3
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


class MediaError(ValueError, UserError):
    """A media file that cannot be read or written; the message is one line naming the file and why."""


class VideoData(NamedTuple):
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float  # nominal frame rate of the stream (frames may still be irregular: see `times`)
    audio: np.ndarray | None  # float32 (N,) mono, starting at the requested start time; None: no audio
    sample_rate: int  # of `audio` (the stream's own rate unless a rate was requested); 0 when no audio
    times: np.ndarray  # float64 (T,) seconds of each frame, relative to the video stream's start
    start: float = 0.0  # the time (seconds) that audio[0] belongs to: the `start` that was read from


class VideoInfo(NamedTuple):
    width: int
    height: int
    fps: float
    duration: float  # seconds of decodable video (checked at both ends when probed with verify=True)
    num_frames: int  # from the header; an estimate (duration * fps) when the container does not say
    has_audio: bool
    sample_rate: int  # of the first audio stream; 0 when there is none
    codec: str


class AudioData(NamedTuple):
    audio: np.ndarray  # float32 (N,) mono in [-1, 1]
    sample_rate: int
    channels: int  # channel count in the file (the returned audio is their mean)


# ---------------------------------------------------------------------------------------------- helpers
def _name(src: Source) -> str:
    if isinstance(src, str | os.PathLike):
        return str(src)
    return getattr(src, "name", None) or "<in-memory media>"


def _check_frames(frames: np.ndarray, what: str) -> None:
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"{what}: frames must be a uint8 array of shape (T, H, W, 3), got {got}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{what}: frames must not be empty, got shape {frames.shape}")


def _check_audio(audio: np.ndarray, what: str) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"{what}: audio must be a non-empty float array of shape (N,), got {audio.dtype} {audio.shape}"
        )
    if not np.isfinite(audio).all():
        raise ValueError(f"{what}: audio contains NaN or inf values")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _check_rate(rate: float, what: str, name: str) -> None:
    if not (isinstance(rate, int | float | Fraction) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"{what}: {name} must be a positive number, got {rate!r}")


def _fraction(fps: float) -> Fraction:
    # NTSC-style rates (29.97...) become 30000/1001 rather than a huge exact binary fraction.
    return Fraction(fps).limit_denominator(1001)


@contextlib.contextmanager
def _target(path: PathOrFile):
    """What a writer writes to: a temporary sibling that replaces a path atomically, or the file object."""
    if isinstance(path, str | os.PathLike):
        with atomic_path(path) as tmp:
            yield str(tmp)
    else:
        yield path


# ---------------------------------------------------------------------------------------------- mp4 write
def write_mp4(
    path: PathOrFile,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    crf: int = DEFAULT_CRF,
    pix_fmt: str = "yuv420p",
    pad_to_even: bool = False,
) -> None:
    """Write ``frames`` (+ optional mono ``audio``) as a browser-playable mp4: H.264 yuv420p + AAC.

    yuv420p needs even width and height: odd sizes are an error unless ``pad_to_even`` (then the last
    row/column is repeated). On a path the file is written with ``+faststart`` (index first, so browsers
    start playing before the download ends) and appears atomically; a file object gets a plain mp4.
    ``pix_fmt="yuv444p"`` keeps full colour resolution but browsers do not play it.
    """
    what = f"write_mp4({_name(path)})"
    _check_frames(frames, what)
    _check_rate(fps, what, "fps")
    if pix_fmt not in PIX_FMTS:
        raise ValueError(f"{what}: pix_fmt must be one of {PIX_FMTS}, got {pix_fmt!r}")
    if audio is not None:
        audio = _check_audio(audio, what)
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"{what}: sample_rate must be a positive int, got {sample_rate!r}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:  # both 4:2:0 and (in x264) 4:4:4 need even sizes
        if not pad_to_even:
            raise ValueError(
                f"{what}: H.264 yuv420p needs even width and height, got {w}x{h}; "
                "crop the frames or pass pad_to_even=True"
            )
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    if isinstance(path, str | os.PathLike):
        with atomic_path(path) as tmp:
            _encode_mp4(str(tmp), frames, fps, audio, sample_rate, crf, pix_fmt, {"movflags": "+faststart"})
    else:
        _encode_mp4(path, frames, fps, audio, sample_rate, crf, pix_fmt, {})


def encode_mp4(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    crf: int = DEFAULT_CRF,
    pix_fmt: str = "yuv420p",
) -> bytes:
    """``write_mp4`` into memory: the mp4 file's bytes."""
    buf = io.BytesIO()
    write_mp4(buf, frames, fps, audio, sample_rate, crf=crf, pix_fmt=pix_fmt)
    return buf.getvalue()


def _encode_mp4(target, frames, fps, audio, sample_rate, crf, pix_fmt, options) -> None:
    av = require("av")

    rate = _fraction(fps)
    _, h, w, _ = frames.shape
    try:
        container = av.open(target, "w", format="mp4", options=options)
    except av.FFmpegError as e:
        raise MediaError(f"cannot create mp4 {_name(target)}: {e}") from None
    try:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.options = {"crf": str(int(crf))}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i  # in units of 1/fps (the codec's time base)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if astream is not None:
            for s in range(0, audio.shape[0], AAC_FRAME):
                chunk = audio[s : s + AAC_FRAME][None, :]  # (1, n): one plane of mono float
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, s
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
    except av.FFmpegError as e:
        raise MediaError(f"cannot encode mp4 {_name(target)}: {e}") from None
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------- mp4 read
def _open_input(src: Source):
    """Open ``src`` with PyAV, turning every failure into a one-line MediaError."""
    av = require("av")

    name = _name(src)
    if isinstance(src, str | os.PathLike):
        p = Path(src)
        if not p.exists():
            raise MediaError(f"{name}: no such file")
        if not p.is_file():
            raise MediaError(f"{name}: not a file")
        if p.stat().st_size == 0:
            raise MediaError(f"{name}: empty file (0 bytes)")
        target = str(p)
    elif isinstance(src, bytes | bytearray | memoryview):
        if len(src) == 0:
            raise MediaError(f"{name}: empty data (0 bytes)")
        target = io.BytesIO(bytes(src))
    else:
        target = src
    try:
        container = av.open(target, "r")
    except av.FFmpegError as e:
        raise MediaError(f"{name}: not a readable media file ({_reason(e)})") from None
    except (OSError, EOFError) as e:
        raise MediaError(f"{name}: cannot open ({e})") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name}: no video stream")
    return container


def _reason(e: Exception) -> str:
    """An FFmpeg error without its errno and file-name decorations."""
    text = getattr(e, "strerror", None) or str(e)
    return str(text).splitlines()[0] if text else type(e).__name__


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return 0.0


def _stream_start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _header_duration(container, stream) -> float | None:
    """Seconds of ``stream`` according to the file's header (None when the container does not say)."""
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / require("av").time_base
    return None


def _upright(frame) -> np.ndarray:
    """RGB array of a decoded frame as players show it: phone videos store a display rotation."""
    img = frame.to_ndarray(format="rgb24")
    # PyAV: degrees the display matrix turns the picture counter-clockwise; np.rot90 turns counter-clockwise.
    quarter = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, quarter)) if quarter else img


class _Decoded:
    """What ``read_video``'s demux pass collects: frames and their times, mono audio chunks."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.chunks: list[np.ndarray] = []
        self.audio_t0: float | None = None
        self.audio_rate = 0
        self.resampler = None
        self.video_done = self.audio_done = False

    def video(self, frame, origin: float, fps: float, start: float, end: float) -> None:
        eps = 1e-6
        t = (frame.time - origin) if frame.time is not None else len(self.times) / max(fps, 1e-9)
        if t >= end - eps:
            self.video_done = True
        elif t >= start - eps:
            self.frames.append(_upright(frame))
            self.times.append(t)

    def audio(self, frame, origin: float, end: float) -> None:
        t = (frame.time - origin) if frame.time is not None else None
        if t is not None and t >= end:
            self.audio_done = True
            return
        if self.resampler is None:
            # Planar float at the stream's own rate and layout: no delay, any input format.
            av = require("av")
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
            self.audio_rate = frame.sample_rate
        for out in self.resampler.resample(frame):
            if self.audio_t0 is None:
                self.audio_t0 = t if t is not None else 0.0
            self.chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))  # (C, n) → (n,)

    def flush(self) -> None:
        if self.resampler is not None:
            for out in self.resampler.resample(None):
                self.chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))


def _demux(container, vstream, astream, start: float, end: float) -> _Decoded:
    """Decode ``vstream`` (and ``astream``) from the current position up to ``end`` seconds."""
    av = require("av")
    fps, origin = _stream_fps(vstream), _stream_start(vstream)
    got = _Decoded()
    for packet in container.demux(*([vstream] + ([astream] if astream is not None else []))):
        if got.video_done if packet.stream.type == "video" else got.audio_done:
            continue
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                got.video(frame, origin, fps, start, end)
                if got.video_done:
                    break
            else:
                got.audio(frame, origin, end)
                if got.audio_done:
                    break
        if got.video_done and (got.audio_done or astream is None):
            break
    got.flush()
    return got


def _trim_audio(got: _Decoded, start: float, stop: float, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """The decoded audio from ``start`` to ``stop`` seconds (zeros where the stream starts late), at
    ``sample_rate`` (None: the stream's)."""
    audio, rate = np.concatenate(got.chunks), got.audio_rate
    # audio[0] must be at `start`: trim what came before it, pad where the stream starts late.
    offset = int(round((start - got.audio_t0) * rate))
    audio = audio[offset:] if offset >= 0 else np.concatenate([np.zeros(-offset, np.float32), audio])
    if math.isfinite(stop):
        audio = audio[: max(0, int(round((stop - start) * rate)))]
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample_audio(audio, rate, sample_rate), sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def _check_decoded(name: str, times: list[float], header, start: float, end: float, fps: float) -> None:
    """MediaError for no frames, or for fewer than the header promises (a truncated file)."""
    if not times:
        if header is not None and start >= header:
            raise MediaError(f"{name}: start {start:.3f} s is past the end of the video ({header:.3f} s)")
        raise MediaError(f"{name}: no decodable video frames (the file is corrupt or truncated)")
    if header is not None and fps > 0:
        # Frames the header promises but the file no longer holds: a truncated (or cut-short) download.
        expected_last = min(end, header) - TRUNCATION_SLACK_FRAMES / fps
        if times[-1] < expected_last:
            raise MediaError(
                f"{name}: truncated file: video data ends at {times[-1] + 1 / fps:.3f} s "
                f"but the header says {header:.3f} s"
            )


def read_video(
    src: Source,
    *,
    start: float = 0.0,
    duration: float | None = None,
    sample_rate: int | None = None,
    with_audio: bool = True,
) -> VideoData:
    """Decode the frames (and mono audio) of ``src`` between ``start`` and ``start + duration`` seconds.

    ``src`` is a path, the file's bytes, or a binary file object. Times count from the video stream's
    first timestamp. Audio of any layout and sample format is mixed down to mono float32 and starts
    exactly at ``start`` (zeros where the stream starts later); ``sample_rate`` resamples it. A missing,
    empty, non-video, truncated or undecodable file raises MediaError.
    """
    name = _name(src)
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"read_video({name}): start must be >= 0 seconds, got {start}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"read_video({name}): duration must be > 0 seconds, got {duration}")
    av = require("av")

    container = _open_input(src)
    end = math.inf if duration is None else start + duration
    try:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if (with_audio and container.streams.audio) else None
        vstream.thread_type = "AUTO"
        fps, origin = _stream_fps(vstream), _stream_start(vstream)
        header = _header_duration(container, vstream)
        if start > 0:
            # Lands on the keyframe at or before `start`; frames before it are decoded and dropped.
            container.seek(int((start + origin) / vstream.time_base), stream=vstream, backward=True)
        got = _demux(container, vstream, astream, start, end)
        stop = end
        if astream is not None and (audio_header := _header_duration(container, astream)) is not None:
            # Drop the encoder's padding after the last real sample (AAC rounds up to 1024-sample frames).
            stop = min(stop, _stream_start(astream) - origin + audio_header)
    except av.FFmpegError as e:
        raise MediaError(f"{name}: cannot decode, the file is corrupt or truncated ({_reason(e)})") from None
    finally:
        container.close()

    _check_decoded(name, got.times, header, start, end, fps)
    audio, rate = (
        _trim_audio(got, start, stop, sample_rate) if astream is not None and got.chunks else (None, 0)
    )
    return VideoData(np.stack(got.frames), fps, audio, rate, np.asarray(got.times, dtype=np.float64), start)


def probe_video(src: Source, *, verify: bool = True) -> VideoInfo:
    """Read a video's header (size, fps, duration, audio) without decoding it all.

    With ``verify`` the first frame and the last second are decoded too, so an undecodable or truncated
    file fails here (MediaError) rather than in the middle of training.
    """
    av = require("av")

    name = _name(src)
    data = None
    if not isinstance(src, str | os.PathLike) and verify:
        # A file object is read twice (header, then the tail); keep its bytes.
        data = src if isinstance(src, bytes | bytearray) else src.read()
        src = data
    container = _open_input(src)
    try:
        v = container.streams.video[0]
        fps = _stream_fps(v)
        width, height = v.codec_context.width, v.codec_context.height
        duration = _header_duration(container, v)
        num_frames = int(v.frames or 0)
        a = container.streams.audio[0] if container.streams.audio else None
        has_audio, rate = a is not None, (a.codec_context.sample_rate if a is not None else 0)
        codec = v.codec_context.name
    except av.FFmpegError as e:
        raise MediaError(f"{name}: cannot read header ({_reason(e)})") from None
    finally:
        container.close()
    if fps <= 0:
        raise MediaError(f"{name}: the video stream has no frame rate")
    if width <= 0 or height <= 0:
        raise MediaError(f"{name}: the video stream has no frame size")
    if verify:
        first = read_video(src if data is None else data, duration=1.0 / fps, with_audio=False)
        width, height = first.frames.shape[2], first.frames.shape[1]
        if duration is None:
            # The container does not say how long it is: decode it all once.
            full = read_video(src if data is None else data, with_audio=False)
            duration = float(full.times[-1]) + 1.0 / fps
            num_frames = len(full.times)
        else:
            tail_start = max(0.0, duration - 1.0)
            tail = read_video(src if data is None else data, start=tail_start, with_audio=False)
            duration = min(duration, float(tail.times[-1]) + 1.0 / fps)
    if duration is None or duration <= 0:
        raise MediaError(f"{name}: unknown or zero duration")
    if num_frames <= 0:
        num_frames = int(round(duration * fps))
    return VideoInfo(width, height, fps, duration, num_frames, has_audio, rate, codec)


# ---------------------------------------------------------------------------------------------- GIF
def write_gif(path: PathOrFile, frames: np.ndarray, fps: float, *, loop: bool = True) -> None:
    """An animated GIF preview (256-colour palette per frame; GIF delays are whole hundredths of a second).

    GIF cannot hold identical consecutive frames as separate frames: pillow merges them into one longer frame.
    """
    what = f"write_gif({_name(path)})"
    _check_frames(frames, what)
    _check_rate(fps, what, "fps")
    try:
        Image = require("PIL.Image")
    except ImportError:  # training machines often lack pillow: a plain, larger GIF instead
        data = gif_bytes_basic(frames, fps)
        if isinstance(path, str | os.PathLike):
            atomic_write_bytes(path, data)
        else:
            path.write(data)
        return
    images = [Image.fromarray(np.ascontiguousarray(f), mode="RGB") for f in frames]
    # Delays rounded per frame from exact end times, so the total duration stays exact (8 fps: 120, 130, ...).
    ends_cs = np.round(np.arange(1, len(frames) + 1) * 100.0 / fps).astype(int)
    delays_ms = (np.diff(ends_cs, prepend=0) * 10).tolist()
    kwargs = {"loop": 0} if loop else {}
    with _target(path) as target:
        images[0].save(
            target,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=delays_ms,
            disposal=1,
            **kwargs,
        )


def gif_bytes_basic(frames: np.ndarray, fps: float) -> bytes:
    """Animated GIF without pillow: a fixed 6×7×6 colour cube and LZW codes kept at 9 bits ("uncompressed"
    GIF: a clear code every 254 literals), ~1.1 bytes per pixel. For previews on machines without pillow."""
    t, h, w, _ = frames.shape
    levels = (6, 7, 6)
    palette = np.zeros((256, 3), dtype=np.uint8)
    cube = np.stack(np.meshgrid(*[np.linspace(0, 255, n) for n in levels], indexing="ij"), -1).reshape(-1, 3)
    palette[: len(cube)] = cube.round().astype(np.uint8)
    q = [
        np.clip(np.rint(frames[..., c] / 255.0 * (n - 1)), 0, n - 1).astype(np.int64)
        for c, n in enumerate(levels)
    ]
    idx = (q[0] * levels[1] + q[1]) * levels[2] + q[2]  # (T, H, W) palette indices
    delay = max(1, round(100 / fps))
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + palette.tobytes())
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    clear, end = 256, 257
    for frame in idx:
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", delay) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x08"
        codes = []
        flat = frame.reshape(-1)
        for start in range(0, flat.size, 254):
            codes.append(clear)
            codes.extend(flat[start : start + 254].tolist())
        codes.append(end)
        bits = np.array(codes, dtype=np.int64)[:, None] >> np.arange(9) & 1  # 9-bit codes, LSB first
        data = np.packbits(bits.reshape(-1).astype(np.uint8), bitorder="little").tobytes()
        for s in range(0, len(data), 255):
            chunk = data[s : s + 255]
            out += bytes([len(chunk)]) + chunk
        out += b"\x00"
    out += b"\x3b"
    return bytes(out)


# ---------------------------------------------------------------------------------------------- WAV
WAV_DTYPES = ("int16", "float32")


def write_wav(path: PathOrFile, audio: np.ndarray, sample_rate: int, *, dtype: str = "int16") -> None:
    """Mono WAV. ``int16`` (default) plays everywhere; ``float32`` stores the samples bit-exactly."""
    what = f"write_wav({_name(path)})"
    audio = _check_audio(audio, what)
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"{what}: sample_rate must be a positive int, got {sample_rate!r}")
    if dtype == "int16":
        # The scale read_wav divides by; +1.0 maps to 32767 (the largest int16).
        data = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    elif dtype == "float32":
        data = audio
    else:
        raise ValueError(f"{what}: dtype must be one of {WAV_DTYPES}, got {dtype!r}")
    with _target(path) as target:
        if dtype == "int16":  # the standard library writes PCM: no scipy needed on training machines
            with wave.open(target, "wb") as f:
                f.setnchannels(1)
                f.setsampwidth(2)
                f.setframerate(sample_rate)
                f.writeframes(data.astype("<i2").tobytes())
        else:
            require("scipy.io.wavfile").write(target, sample_rate, data)


def encode_wav(audio: np.ndarray, sample_rate: int, *, dtype: str = "int16") -> bytes:
    buf = io.BytesIO()
    write_wav(buf, audio, sample_rate, dtype=dtype)
    return buf.getvalue()


def read_wav(src: Source) -> AudioData:
    """Any PCM/float WAV → float32 mono in [-1, 1] (channels averaged)."""
    wavfile = require("scipy.io.wavfile")

    name = _name(src)
    if isinstance(src, str | os.PathLike):
        p = Path(src)
        if not p.is_file():
            raise MediaError(f"{name}: no such file")
        if p.stat().st_size == 0:
            raise MediaError(f"{name}: empty file (0 bytes)")
        target = str(p)
    elif isinstance(src, bytes | bytearray | memoryview):
        target = io.BytesIO(bytes(src))
    else:
        target = src
    try:
        rate, data = wavfile.read(target)
    except (ValueError, EOFError, OSError, IndexError) as e:
        raise MediaError(
            f"{name}: not a readable WAV file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    data = np.asarray(data)
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "f":
        x = data.astype(np.float32)
    else:
        raise MediaError(f"{name}: unsupported WAV sample type {data.dtype}")
    channels = 1 if x.ndim == 1 else x.shape[1]
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)  # (N, C) → (N,)
    return AudioData(np.ascontiguousarray(x, dtype=np.float32), int(rate), channels)


# ---------------------------------------------------------------------------------------------- arrays
def resample_audio(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly, anti-aliased); length becomes ceil(N * to / from)."""
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate or audio.size == 0:
        return audio.copy()
    resample_poly = require("scipy.signal").resample_poly
    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(audio, int(to_rate) // g, int(from_rate) // g).astype(np.float32)


def resize_center_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (T, H, W, 3) → (T, height, width, 3): crop the centre to the target aspect ratio, then resize.

    Bilinear with pillow's antialiasing (its filter widens when shrinking, so downscaling averages areas).
    """
    _check_frames(frames, "resize_center_crop")
    if width <= 0 or height <= 0:
        raise ValueError(f"resize_center_crop: target size must be positive, got {width}x{height}")
    _, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    Image = require("PIL.Image")
    target_aspect = width / height
    if w / h > target_aspect:  # too wide: keep full height, crop the sides
        cw = h * target_aspect
        box = ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
    else:  # too tall: keep full width, crop top and bottom
        ch = w / target_aspect
        box = (0.0, (h - ch) / 2, float(w), (h + ch) / 2)
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(f), mode="RGB")
        out[i] = np.asarray(img.resize((width, height), Image.Resampling.BILINEAR, box=box))
    return out


class ClipArrays(NamedTuple):
    frames: np.ndarray  # uint8 (F, height, width, 3)
    audio: np.ndarray  # float32 (round(F / fps * sample_rate),); zeros when has_audio is False
    has_audio: bool


def conform_clip(
    video: VideoData, *, start: float, num_frames: int, fps: float, width: int, height: int, sample_rate: int
) -> ClipArrays:
    """Cut a fixed-format clip out of decoded video: ``num_frames`` frames at ``fps`` from ``start`` seconds.

    Frames are picked by timestamp (the nearest source frame to each target time, so any source frame
    rate works), then resized + centre-cropped; audio becomes mono ``sample_rate`` of exactly the clip's
    length (silence and ``has_audio=False`` when the video has none). Raises MediaError when the video
    does not cover the clip.
    """
    if num_frames <= 0 or fps <= 0 or sample_rate <= 0:
        raise ValueError(
            f"conform_clip: num_frames, fps, sample_rate must be > 0, got {num_frames}, {fps}, {sample_rate}"
        )
    times = video.times
    # How long each source frame stays on screen: its spacing, or the nominal rate for a single frame.
    hold = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / (video.fps or fps)
    targets = start + np.arange(num_frames) / fps  # (F,) seconds
    if targets[0] < times[0] - hold / 2 or targets[-1] >= times[-1] + hold:
        raise MediaError(
            f"clip {start:.3f}-{targets[-1]:.3f} s is not covered by the decoded video "
            f"({times[0]:.3f}-{times[-1] + hold:.3f} s)"
        )
    # Nearest source frame by timestamp (ties go to the earlier frame).
    right = np.clip(np.searchsorted(times, targets), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    idx = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    frames = resize_center_crop(video.frames[idx], width, height)
    n = int(round(num_frames / fps * sample_rate))
    if video.audio is None:
        return ClipArrays(frames, np.zeros(n, np.float32), False)
    audio = resample_audio(video.audio, video.sample_rate, sample_rate)
    offset = int(round((start - video.start) * sample_rate))
    seg = audio[max(0, offset) : max(0, offset) + n]
    lead = max(0, -offset)  # the audio stream starts after `start`: silence first
    out = np.zeros(n, np.float32)
    out[lead : lead + len(seg[: n - lead])] = seg[: n - lead]
    return ClipArrays(frames, out, True)
