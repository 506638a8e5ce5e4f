"""Background work: a generator (or a one-shot call) run in its own QThread, its values sent back as signals.

``GeneratorThread`` is the one worker: its QObject lives in the thread and emits each value
the generator yields; Qt queues those signals to the GUI thread, so whatever the GUI
connects runs there. ``BackgroundCall`` (one call), ``TrainingRun`` (the Trainer's reports)
and the Compare tab's run are built on it. Threads exchange plain values (the Trainer's
reports are frozen dataclasses of floats and ints). Nothing here ever calls
``QThread.terminate()``: a stop is a request the Trainer honours within one batch.

Not superqt's ``GeneratorWorker``: it treats a ``RuntimeError`` raised by the generator as
"the worker was deleted" (a warning, and neither ``errored`` nor ``finished``), and torch
raises ``RuntimeError`` for most training failures; its ``quit()`` abandons the generator
without letting the Trainer write its checkpoint, and its pause stops iterating, so a stop
could not be honoured while paused.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(one-line message for a dialog, traceback for the details pane; empty for user errors)."""
    from workbench.errors import WorkbenchError

    if isinstance(exc, WorkbenchError):
        return str(exc), ""
    detail = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}", detail


class _Worker(QObject):
    yielded = Signal(object)
    failed = Signal(str, str)
    done = Signal()

    def __init__(self, make: Callable[[], Iterable[Any]]) -> None:
        super().__init__()
        self._make = make

    @Slot()
    def run(self) -> None:
        try:
            for value in self._make():
                self.yielded.emit(value)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach a dialog
            self.failed.emit(*describe_error(exc))
        finally:
            self.done.emit()


class GeneratorThread(QObject):
    """Iterate ``make()`` in a new thread: ``yielded(value)`` per item, ``failed(message, details)``, then ``finished``.

    ``make`` itself runs in the thread too (opening data can take seconds). Keep a reference
    until ``finished`` (the window keeps them in a list).
    """

    yielded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, make: Callable[[], Iterable[Any]], label: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self._thread = QThread()
        self._thread.setObjectName(f"workbench: {label}")
        self._worker = _Worker(make)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        # Signal-to-signal connections: Qt queues them to this object's (the GUI) thread.
        self._worker.yielded.connect(self.yielded)
        self._worker.failed.connect(self.failed)
        # Trap: queued (the default, the QThread object lives in the GUI thread) the quit waits for the GUI's event
        # loop, so a wait() on the GUI thread — closing the window, a panel's wait() — never returned while a call
        # was still running. QThread.quit is thread-safe: the worker's thread calls it directly.
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._thread_finished)  # queued: after every value reached the GUI thread
        self._started = self._ended = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def is_running(self) -> bool:
        """True from ``start`` until ``finished`` reaches the GUI thread (every value and failure came before it)."""
        return self._started and not self._ended

    @Slot()
    def _thread_finished(self) -> None:
        self._ended = True
        self.finished.emit()

    def wait(self, msecs: int = -1) -> bool:
        return self._thread.wait() if msecs < 0 else self._thread.wait(msecs)


class BackgroundCall(GeneratorThread):
    """Run ``fn()`` in a new thread; ``succeeded(result)`` or ``failed(message, details)``, then ``finished``."""

    succeeded = Signal(object)

    def __init__(self, fn: Callable[[], Any], label: str, parent: QObject | None = None) -> None:
        super().__init__(lambda: [fn()], label, parent)
        self.yielded.connect(self.succeeded)


class TrainingRun(GeneratorThread):
    """Drives a Trainer in a worker thread.

    ``prepare`` runs in the worker thread and returns the Trainer (opening data and
    building the trainer can take seconds). Controls go to the trainer's thread-safe
    ``request_*`` methods.
    """

    steps = Signal(list)  # list[StepReport]
    epoch = Signal(object)  # EpochReport
    state = Signal(object)  # StateReport

    # Step reports are batched so a fast run (cached features: thousands of steps a
    # second) cannot flood the UI thread's event queue.
    FLUSH_SECONDS = 0.05

    def __init__(self, prepare: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(self._reports, "training", parent)
        self._prepare = prepare
        self.trainer: Any = None
        self._stop_before_start = False
        self.yielded.connect(self._forward)

    def _reports(self) -> Iterator[Any]:
        trainer = self._prepare()
        self.trainer = trainer
        if self._stop_before_start:
            trainer.request_stop()
        yield from batched_steps(trainer.run(), self.FLUSH_SECONDS)

    def _forward(self, value: Any) -> None:
        from workbench.training.reports import EpochReport, StateReport

        if isinstance(value, list):
            self.steps.emit(value)
        elif isinstance(value, EpochReport):
            self.epoch.emit(value)
        elif isinstance(value, StateReport):
            self.state.emit(value)

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.request_pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.request_resume()

    def stop(self) -> None:
        # The trainer may still be under construction in the worker thread.
        self._stop_before_start = True
        trainer = self.trainer
        if trainer is not None:
            trainer.request_stop()


def batched_steps(reports: Iterable[Any], seconds: float) -> Iterator[Any]:
    """Step reports gathered into lists (one list at most every ``seconds``); other reports as they come.

    Steps gathered before a failure are still delivered before the failure is raised.
    """
    from workbench.training.reports import StepReport

    pending: list[Any] = []
    last_flush = time.monotonic()
    try:
        for report in reports:
            if isinstance(report, StepReport):
                pending.append(report)
                if time.monotonic() - last_flush >= seconds:
                    yield pending
                    pending, last_flush = [], time.monotonic()
                continue
            if pending:
                yield pending
                pending, last_flush = [], time.monotonic()
            yield report
    except Exception:
        if pending:
            yield pending
        raise
    if pending:
        yield pending
