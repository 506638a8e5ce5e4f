"""Stop requests from the operating system: Ctrl-C (SIGINT), SIGTERM and SIGHUP all mean "stop after this batch".

SIGTERM is what a scheduler, ``systemd``, ``docker stop`` and a logout send; SIGHUP is a closed
terminal. Each is a stop like Ctrl-C: the running batch finishes, the stop checkpoint is
written, the run is marked "stopped", and the command exits with 128 + the signal number
(130, 143, 129), as a shell reports a process ended by that signal. The same signal again
aborts at once (KeyboardInterrupt), without a checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_NAMES: dict[int, str] = {int(signal.SIGINT): "Ctrl-C"}


class StopOnSignals:
    """While entered (main thread only), a stop signal calls ``request_stop`` once; a second one aborts."""

    def __init__(self, request_stop: Callable[[], None], then: str = "stopping after this batch") -> None:
        self.request_stop = request_stop
        self.then = then
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():  # Python installs handlers only there
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        """128 + the signal that stopped the work (130 when none did: a stop is reported like Ctrl-C)."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        name = _NAMES.get(sig) or signal.Signals(sig).name
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = sig
        try:  # after SIGHUP the terminal may be gone: saying so must not stop the stop
            print(f"\n{name}: {self.then} ({name} again to abort without a checkpoint)…", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        self.request_stop()
