"""A clean stop on SIGTERM or Ctrl-C for long commands (training, tokenizing).

``StopSignals`` is a context manager: inside it, SIGTERM and SIGINT only set ``signum``; the work checks
it between units (a training step, a tokenize batch), finishes the unit, saves what it has and returns. A
second signal raises KeyboardInterrupt at once. Handlers are installed on the main thread only (Python
allows no other) and the previous ones come back on exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger("videopoet")


class StopSignals:
    def __init__(self, what: str):
        self.what = what  # what the work does on the signal, for the log line
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("signal %d: %s", signum, self.what)
