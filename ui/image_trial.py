""""Try an image": classify one picture with the evaluated run's model in a background call, the latest wins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from workbench_ui.top5_view import PREVIEW
from workbench_ui.workers import BackgroundCall

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"


class ImageTrial(QObject):
    """One classification at a time; an image asked for meanwhile runs next (only the latest one)."""

    started = Signal(str)  # the file's name: classifying it now
    tried = Signal(object, object, object)  # path, workbench.predict Prediction, RGBA preview
    refused = Signal(str, str)  # the file's name, why it could not be classified
    busyChanged = Signal()

    def __init__(self, evaluation: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._evaluation = evaluation  # the Evaluation whose model classifies (None before one)
        self.call: BackgroundCall | None = None
        self.pending: Path | None = None

    def is_running(self) -> bool:
        return self.call is not None and self.call.is_running()

    def try_image(self, path: str | Path) -> None:
        ev = self._evaluation()
        if ev is None or ev.module is None:
            self.refused.emit(Path(path).name, "no model yet: train a run or open one first")
            return
        path = Path(path)
        if self.call is not None:
            self.pending = path  # the latest one runs when this one is done
            return
        self.started.emit(path.name)

        def work() -> Any:
            from workbench.data import Item
            from workbench.evaluate import thumbnail
            from workbench.predict import check_images

            check_images([str(path)])
            prediction = ev.classify(path)
            img = thumbnail(Item(label=0, name=path.name, path=path), PREVIEW).convert("RGBA")
            return prediction, (img.width, img.height, img.tobytes())

        call = BackgroundCall(work, f"Classifying {path.name}", self)
        call.succeeded.connect(lambda result: self.tried.emit(path, *result))
        call.failed.connect(lambda message, _detail: self.refused.emit(path.name, message))
        call.finished.connect(lambda: self._finished(call))
        self.call = call
        call.start()
        self.busyChanged.emit()

    def _finished(self, call: BackgroundCall) -> None:
        if self.call is call:
            self.call = None
        call.deleteLater()
        pending, self.pending = self.pending, None
        if pending is not None:
            self.try_image(pending)
        self.busyChanged.emit()


def dropped_image(event: QDragEnterEvent | QDropEvent) -> str | None:
    """The image file dropped (exactly one, local, with an image suffix), or None."""
    urls = event.mimeData().urls()
    if len(urls) == 1 and urls[0].isLocalFile():
        path = urls[0].toLocalFile()
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None
