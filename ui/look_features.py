"""Feature visualisation in the window: channels to picture, a Start/Cancel button, progress by step.

The optimisation (workbench.looking.feature_vis) runs in a background call on a copy of the model; its
progress callback only writes the step into a shared dict and reads the cancel flag, and a timer on the
GUI thread shows the step, so the worker never touches a widget. A cancel ends it within one step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QWidget

from workbench_ui.workers import BackgroundCall


class FeatureVisControls(QWidget):
    """``Channels [0-7]  side [128]  What it looks for / Cancel``; emits ``pictured(png)`` or ``failed``."""

    pictured = Signal(bytes)
    failed = Signal(str, str)
    progressed = Signal(str)  # a status line: "step 12 of 128", "cancelled at step 12 of 128"

    def __init__(self, inputs: Callable[[], tuple[Any, Any, str] | None], parent: QWidget | None = None) -> None:
        """``inputs()`` gives (model, spec, layer path) or None (it reports why itself)."""
        super().__init__(parent)
        from workbench.looking.feature_vis import MAX_SIDE

        self._inputs = inputs
        self.call: BackgroundCall | None = None
        self._state: dict[str, Any] = {}
        self.channels = QLineEdit("0-7")
        self.channels.setMaximumWidth(90)
        self.channels.setToolTip("Channels of the layer to picture: 0,3,7 or 0-7")
        self.side = QSpinBox(minimum=16, maximum=MAX_SIDE, value=128)
        self.side.setSuffix(" px")
        self.start = QPushButton("What it looks for")
        self.start.setToolTip("Feature visualisation: optimise one image per channel that excites it most "
                              "(gradient ascent on a decorrelated Fourier image, as Lucid does)")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._show_step)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Channels"), self.channels, self.side, self.start, self.cancel):
            row.addWidget(w)
        self.start.clicked.connect(self.run)
        self.cancel.clicked.connect(self.request_cancel)

    def run(self) -> None:
        from workbench.errors import WorkbenchError
        from workbench.looking.feature_vis import STEPS, parse_channels

        try:
            channels = parse_channels(self.channels.text())
        except WorkbenchError as exc:
            self.failed.emit(str(exc), "")
            return
        got = self._inputs()
        if got is None or self.call is not None:
            return
        module, spec, layer = got
        side = self.side.value()
        state: dict[str, Any] = {"step": 0, "steps": STEPS, "cancel": False}
        self._state = state

        def progress(step: int, steps: int) -> bool:
            state["step"], state["steps"] = step, steps
            return not state["cancel"]

        def draw() -> bytes:
            from workbench.looking.feature_vis import visualise
            from workbench.looking.pictures import features_figure, png_bytes

            pictures = visualise(module, layer, channels, spec.mean, spec.std, side, progress=progress)
            return png_bytes(features_figure([(layer, pictures)]))

        self.call = BackgroundCall(draw, f"feature visualisation of {layer}", self)
        self.call.succeeded.connect(self._done)
        self.call.failed.connect(self._failed)
        self.call.finished.connect(self._finished)
        self.start.setEnabled(False)
        self.cancel.setEnabled(True)
        self.progressed.emit(f"feature visualisation of {layer}: starting…")
        self._timer.start()
        self.call.start()

    def request_cancel(self) -> None:
        self._state["cancel"] = True
        self.cancel.setEnabled(False)

    def wait(self) -> None:
        if self.call is not None:
            self.call.wait()

    def _show_step(self) -> None:
        if self._state:
            self.progressed.emit(f"feature visualisation: step {self._state['step']} of {self._state['steps']}")

    def _done(self, png: bytes) -> None:
        self._timer.stop()
        self.progressed.emit("")
        self.pictured.emit(png)

    def _failed(self, message: str, details: str) -> None:
        self._timer.stop()  # a last tick would cover the message
        if self._state.get("cancel"):
            self.progressed.emit(message)  # "…cancelled at step k of n": a status, not an error
        else:
            self.progressed.emit("")
            self.failed.emit(message, details)

    def _finished(self) -> None:
        self._timer.stop()
        self.call = None
        self.start.setEnabled(True)
        self.cancel.setEnabled(False)
