"""Where the model looked at a misclassified image: Grad-CAM of the starting and the trained model, side by side.

Shown under the Results tab's details when a gallery image is clicked: for the class the trained model
predicted, or (a toggle) the true class, so a user sees whether fine-tuning moved the model's attention onto
the object or off it. The two models are loaded once per run (``RunHeatmaps``); each click draws in a
background call, and a result for an image no longer shown is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QRadioButton, QSizePolicy, QVBoxLayout, QWidget

from workbench_ui.look import muted
from workbench_ui.workers import BackgroundCall


class MistakeHeatmap(QWidget):
    drawn = Signal()  # a heatmap (or its reason for not being one) is shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.calls: list[BackgroundCall] = []
        self._looks: Any = None  # RunHeatmaps of the run shown
        self._request: tuple[Any, ...] | None = None
        self.predicted = QRadioButton("predicted class")
        self.true = QRadioButton("true class")
        self.predicted.setChecked(True)
        self.picture = QLabel("")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # The pane's size decides the picture's (scaled to fit), not the reverse.
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setMinimumHeight(120)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        muted(self.note)
        choice = QHBoxLayout()
        choice.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Where it looked (Grad-CAM), starting → trained model, for the")
        title.setWordWrap(True)
        choice.addWidget(self.predicted)
        choice.addWidget(self.true)
        choice.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(title)
        layout.addLayout(choice)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.note)
        self.predicted.toggled.connect(lambda _on: self._redraw())
        self.setVisible(False)

    def set_run(self, run_dir: Path | None) -> None:
        """The run whose models are compared (None: nothing to show)."""
        from workbench.looking.run_heatmaps import RunHeatmaps

        self._looks = RunHeatmaps(run_dir) if run_dir is not None else None
        self._request = None
        self.picture.clear()
        self.note.setText("")
        self.setVisible(False)

    def show_mistake(self, load_image: Callable[[], Any], predicted: int, true: int, classes: list[str]) -> None:
        """Draw the heatmaps of one misclassified image (``load_image()`` gives it, in the worker)."""
        if self._looks is None:
            return
        self._request = (load_image, predicted, true, classes)
        self.setVisible(True)
        self._redraw()

    def _redraw(self) -> None:
        if self._request is None or self._looks is None:
            return
        load_image, predicted, true, classes = request = self._request
        class_index = predicted if self.predicted.isChecked() else true
        looks = self._looks
        self.note.setText(f"drawing the heatmaps for {classes[class_index]}…")

        def draw() -> tuple[bytes, str]:
            result = looks.for_image(load_image(), class_index)
            layer = result.panels[-1][1].layer
            return result.png(), (f"class {classes[class_index]!r} at {layer}: red is where the class's score "
                                  "depends most on the image")

        call = BackgroundCall(draw, "heatmaps of a misclassified image", self)
        self.calls.append(call)
        key = (request, class_index)
        call.succeeded.connect(lambda drawn: self._shown(key, drawn))
        call.failed.connect(lambda message, _details: self._shown(key, None, message))
        call.finished.connect(lambda: self.calls.remove(call))
        call.start()

    def _current_key(self) -> tuple[Any, ...] | None:
        if self._request is None:
            return None
        predicted, true = self._request[1], self._request[2]
        return (self._request, predicted if self.predicted.isChecked() else true)

    def _shown(self, key: tuple[Any, ...], drawn: tuple[bytes, str] | None, message: str = "") -> None:
        if key != self._current_key():
            return  # another image (or class) was asked for meanwhile
        if drawn is None:
            self.picture.clear()
            self.note.setText(f"No heatmap: {message}")
        else:
            pixmap = QPixmap()
            pixmap.loadFromData(drawn[0], "PNG")
            room = self.picture.size()
            if room.width() > 16 and room.height() > 16 and (pixmap.width() > room.width()
                                                             or pixmap.height() > room.height()):
                pixmap = pixmap.scaled(room, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation)
            self.picture.setPixmap(pixmap)
            self.note.setText(drawn[1])
        self.drawn.emit()

    def wait(self) -> None:
        for call in list(self.calls):
            call.wait()
