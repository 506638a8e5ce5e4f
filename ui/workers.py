"""Background work: one-shot calls and the training generator, each in its own QThread.

Workers live in their thread and emit signals; a small QObject in the UI thread
receives them (queued) and re-emits, so whatever the UI connects runs on the UI
thread. Training reports are the Trainer's frozen dataclasses of plain values.
Nothing here ever calls ``QThread.terminate()``: a stop is a request the Trainer
honours within one batch.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(one-line message for a dialog, traceback for the details pane; empty for user errors)."""
    from workbench.errors import WorkbenchError

    if isinstance(exc, WorkbenchError):
        return str(exc), ""
    detail = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}", detail


class _CallWorker(QObject):
    succeeded = Signal(object)
    failed = Signal(str, str)
    done = Signal()

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self._fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach a dialog
            message, detail = describe_error(exc)
            self.failed.emit(message, detail)
        else:
            self.succeeded.emit(result)
        finally:
            self.done.emit()


class BackgroundCall(QObject):
    """Run ``fn()`` in a new thread; ``succeeded(result)`` or ``failed(message, details)``, then ``finished``.

    Keep a reference until ``finished`` (the window keeps them in a list).
    """

    succeeded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, fn: Callable[[], Any], label: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self._thread = QThread()
        self._thread.setObjectName(f"workbench: {label}")
        self._worker = _CallWorker(fn)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        # Signal-to-signal connections: Qt queues them to this object's (the GUI) thread.
        self._worker.succeeded.connect(self.succeeded)
        self._worker.failed.connect(self.failed)
        self._worker.done.connect(self._thread.quit)
        self._thread.finished.connect(self.finished)

    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, msecs: int = -1) -> bool:
        return self._thread.wait() if msecs < 0 else self._thread.wait(msecs)



class _TrainingWorker(QObject):
    steps = Signal(list)
    epoch = Signal(object)
    state = Signal(object)
    failed = Signal(str, str)
    done = Signal()

    # Step reports are batched so a fast run (cached features: thousands of steps a
    # second) cannot flood the UI thread's event queue.
    FLUSH_SECONDS = 0.05

    def __init__(self, make_reports: Callable[[], Iterator[Any]]) -> None:
        super().__init__()
        self._make_reports = make_reports

    @Slot()
    def run(self) -> None:
        from workbench.training.reports import EpochReport, StateReport, StepReport

        pending: list[Any] = []
        last_flush = time.monotonic()
        try:
            for report in self._make_reports():
                if isinstance(report, StepReport):
                    pending.append(report)
                    if time.monotonic() - last_flush >= self.FLUSH_SECONDS:
                        self.steps.emit(pending)
                        pending, last_flush = [], time.monotonic()
                    continue
                if pending:
                    self.steps.emit(pending)
                    pending, last_flush = [], time.monotonic()
                if isinstance(report, EpochReport):
                    self.epoch.emit(report)
                elif isinstance(report, StateReport):
                    self.state.emit(report)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach a dialog
            if pending:
                self.steps.emit(pending)
            message, detail = describe_error(exc)
            self.failed.emit(message, detail)
        else:
            if pending:
                self.steps.emit(pending)
        finally:
            self.done.emit()


class TrainingRun(QObject):
    """Drives a Trainer in a worker thread.

    ``prepare`` runs in the worker thread and returns the Trainer (opening data and
    building the trainer can take seconds). Controls go to the trainer's thread-safe
    ``request_*`` methods.
    """

    steps = Signal(list)  # list[StepReport]
    epoch = Signal(object)  # EpochReport
    state = Signal(object)  # StateReport
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, prepare: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._prepare = prepare
        self.trainer: Any = None
        self._stop_before_start = False
        self._thread = QThread()
        self._thread.setObjectName("workbench: training")
        self._worker = _TrainingWorker(self._reports)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        # Signal-to-signal connections: Qt queues them to this object's (the GUI) thread.
        self._worker.steps.connect(self.steps)
        self._worker.epoch.connect(self.epoch)
        self._worker.state.connect(self.state)
        self._worker.failed.connect(self.failed)
        self._worker.done.connect(self._thread.quit)
        self._thread.finished.connect(self.finished)

    def _reports(self) -> Iterator[Any]:
        trainer = self._prepare()
        self.trainer = trainer
        if self._stop_before_start:
            trainer.request_stop()
        yield from trainer.run()

    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, msecs: int = -1) -> bool:
        return self._thread.wait() if msecs < 0 else self._thread.wait(msecs)

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

