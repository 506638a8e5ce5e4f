"""The window's background loads: each a BackgroundCall, shown in the status bar while it runs; errors reach a dialog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QProgressBar, QWidget

from workbench.errors import WorkbenchError
from workbench_ui.dialogs import show_error
from workbench_ui.workers import BackgroundCall


class BackgroundTasks(QObject):
    """``label`` and ``bar`` (for the status bar) say what runs; ``calls`` are the ones running."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window  # the parent of error dialogs
        self.calls: list[BackgroundCall] = []
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setMaximumWidth(140)
        self.bar.setMaximumHeight(14)
        self._update()

    def run(self, fn: Callable[[], Any], label: str, on_success: Callable[[Any], None],
            error_title: str = "Something went wrong", on_failure: Callable[[], None] | None = None) -> BackgroundCall:
        """``fn()`` in a worker thread, then ``on_success(result)`` here; a failure (or a WorkbenchError from
        ``on_success``) shows ``error_title`` with the message."""
        call = BackgroundCall(fn, label, self)

        def failed(message: str, detail: str) -> None:
            if on_failure is not None:
                on_failure()
            show_error(self.window, error_title, message, detail)

        def succeeded(result: Any) -> None:
            try:
                on_success(result)
            except WorkbenchError as exc:
                show_error(self.window, error_title, str(exc))

        call.succeeded.connect(succeeded)
        call.failed.connect(failed)
        call.finished.connect(lambda: self._finished(call))
        self.calls.append(call)
        call.start()
        self._update()
        return call

    def is_busy(self) -> bool:
        return bool(self.calls)

    def wait(self) -> None:
        """Wait for every running call (closing: a QThread destroyed while running would abort the process)."""
        for call in list(self.calls):
            call.wait()

    def _finished(self, call: BackgroundCall) -> None:
        if call in self.calls:
            self.calls.remove(call)
        call.deleteLater()
        self._update()

    def _update(self) -> None:
        labels = [c.label for c in self.calls]
        self.bar.setVisible(bool(labels))
        self.label.setText("; ".join(labels) + "…" if labels else "")
        self.label.setVisible(bool(labels))
