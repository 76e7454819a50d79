"""Bounce events heard in the audio: onsets of energy above the voices' band (clicks are broadband)."""

from __future__ import annotations

import numpy as np

CLICK_BAND_HZ = 6500.0  # clicks are detected above this frequency (voices stay below 0.38·16 kHz)
CLICK_MIN_GAP_S = 0.02  # onsets closer than this are one event (two walls hit at once: one click each)
CLICK_REARM_S = 0.004  # the envelope must stay below the threshold this long before a new onset
CLICK_MIN_LEVEL = 0.01  # smallest high-band RMS that counts as a click (world clicks peak near 0.09)


def audio_events(audio: np.ndarray, sample_rate: int, fps: float) -> tuple[list[int], np.ndarray]:
    """Bounce frames heard in ``audio``: onsets of energy above CLICK_BAND_HZ. Also returns the envelope.

    The wave is high-passed in the frequency domain (voices have no partial up there, clicks are
    broadband), its 1 ms RMS envelope is thresholded with hysteresis (re-armed after CLICK_REARM_S below
    the threshold), and each onset's sample time is turned into a frame index (time × fps, rounded).
    """
    a = np.asarray(audio, np.float64)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {a.shape}")
    if a.size < 16 or sample_rate / 2 <= CLICK_BAND_HZ:
        return [], np.zeros(0)
    spec = np.fft.rfft(a)
    spec[np.fft.rfftfreq(a.size, 1.0 / sample_rate) < CLICK_BAND_HZ] = 0
    high = np.fft.irfft(spec, a.size)
    width = max(1, int(round(0.001 * sample_rate)))
    env = np.sqrt(np.convolve(high**2, np.ones(width) / width, mode="same"))
    threshold = max(CLICK_MIN_LEVEL, 6.0 * float(np.median(env)))
    rearm = int(round(CLICK_REARM_S * sample_rate))
    events, armed, quiet, last = [], True, 0, -(10**9)
    for i in np.flatnonzero(np.diff((env > threshold).astype(np.int8)) != 0) + 1:
        if env[i] > threshold:  # rising edge
            if (armed or i - quiet >= rearm) and i - last >= CLICK_MIN_GAP_S * sample_rate:
                events.append(int(round(i / sample_rate * fps)))
                last = i
            armed = False
        else:  # falling edge
            quiet, armed = i, False
    return events, env
