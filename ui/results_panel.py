"""The Results tab: a run's model on its validation set, and "try an image".

Confusion matrix, per-class accuracy, the most-confused pairs and a gallery of misclassified
images (click one for its top-5); "Try an image…" (or dropping an image file here) shows the
top-5 of any picture. Evaluation runs in a background call (workbench.evaluate); only plain
values and a finished model cross back to this thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from workbench.errors import WorkbenchError
from workbench_ui.class_tables import fill_confused_pairs, fill_per_class
from workbench_ui.confusion_view import ConfusionMatrixView
from workbench_ui.image_trial import IMAGE_FILTER, ImageTrial, dropped_image
from workbench_ui.look import muted, warning_text
from workbench_ui.mistake_heatmap import MistakeHeatmap
from workbench_ui.mistakes_gallery import MAX_GALLERY, THUMB, MistakesGallery, gallery_mistakes
from workbench_ui.result_items import RGBA, escape_html, results_table, rgba_pixmap
from workbench_ui.top5_view import PREVIEW, Top5View
from workbench_ui.workers import BackgroundCall


@dataclass
class Loaded:
    """What the worker hands back: the evaluation and thumbnails of the first mistakes."""

    evaluation: Any  # workbench.evaluate.Evaluation
    thumbs: list[RGBA | None] = field(default_factory=list)


def load_results(run_dir: Path, progress: Any = None, cancelled: Any = None) -> Loaded:
    """Evaluate a run and make its gallery thumbnails (runs in a worker thread)."""
    from workbench.evaluate import evaluate_run, thumbnail

    evaluation = evaluate_run(run_dir, progress=progress, cancelled=cancelled)
    thumbs: list[RGBA | None] = []
    for mistake in evaluation.mistakes[:MAX_GALLERY]:
        try:
            img = thumbnail(mistake.item, THUMB).convert("RGBA")
        except WorkbenchError:
            thumbs.append(None)
            continue
        thumbs.append((img.width, img.height, img.tobytes()))
    return Loaded(evaluation, thumbs)


class ResultsPanel(QWidget):
    evaluated = Signal(object)  # Evaluation
    failed = Signal(str)
    predicted = Signal(object)  # Prediction of a tried image

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.evaluation: Any = None
        self.run_dir: Path | None = None
        self.error = ""
        self.filter: tuple[int, int] | None = None
        self._call: BackgroundCall | None = None
        self._pending: Path | None = None
        self._cancel = [False]
        self._progress = (0, 0)
        self._thumbs: list[RGBA | None] = []
        self.setAcceptDrops(True)

        self.title = QLabel("<b>Results</b>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setMaximumHeight(16)
        self.progress.hide()
        self.refresh_button = QPushButton("Re-evaluate")
        self.refresh_button.setToolTip("Evaluate the run again (e.g. after the images changed)")
        self.try_button = QPushButton("Try an image…")
        self.try_button.setToolTip("Classify any image file with this run's model (or drop an image here)")
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.progress)
        header.addWidget(self.refresh_button)
        header.addWidget(self.try_button)
        self.summary = QLabel("Train a run, or open one on the Runs tab: its validation results appear here.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.notes = QLabel("")
        warning_text(self.notes)
        self.notes.setWordWrap(True)
        self.notes.hide()

        self.matrix_view = ConfusionMatrixView()
        matrix_box = QGroupBox("Confusion matrix")
        matrix_layout = QVBoxLayout(matrix_box)
        matrix_layout.setContentsMargins(6, 6, 6, 4)
        matrix_layout.addWidget(self.matrix_view, 1)
        key = QLabel("<span style='color:#1f5fbf'>■</span> correct &nbsp;<span style='color:#c62828'>■</span> "
                     "confused &nbsp;· shade: share of the true class · click a cell for its images")
        muted(key)
        key.setToolTip("Each row is one true class; a cell's shade is the share of that class's validation "
                       "images predicted as the column's class. Hover a cell for its numbers.")
        matrix_layout.addWidget(key)

        self.per_class = results_table(["Class", "Correct", "Accuracy"])
        self.per_class.setSortingEnabled(True)
        per_class_box = QGroupBox("Per-class accuracy")
        QVBoxLayout(per_class_box).addWidget(self.per_class)
        self.pairs = results_table(["True → predicted", "Images", "Share"])
        self.pairs.setToolTip("Click a pair to list its images")
        pairs_box = QGroupBox("Most confused")
        QVBoxLayout(pairs_box).addWidget(self.pairs)
        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(per_class_box)
        side.addWidget(pairs_box)
        side.setSizes([220, 160])

        self.mistakes = MistakesGallery()
        self.gallery, self.gallery_label, self.show_all_button = (self.mistakes.view, self.mistakes.label,
                                                                  self.mistakes.show_all_button)
        self.details = Top5View()
        self.preview, self.details_caption = self.details.preview, self.details.caption
        self.heatmap = MistakeHeatmap()  # where the starting and the trained model looked, on click
        self.trial = ImageTrial(lambda: self.evaluation, self)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(matrix_box)
        upper.addWidget(side)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)
        upper.setSizes([500, 320])
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.mistakes)
        lower.addWidget(self.details)
        lower.addWidget(self.heatmap)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        lower.setStretchFactor(2, 2)
        lower.setSizes([400, 330, 360])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(upper)
        body.addWidget(lower)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 1)
        body.setSizes([430, 230])
        for splitter in (upper, lower, body):
            splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.summary)
        layout.addWidget(self.notes)
        layout.addWidget(body, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._show_progress)
        self.refresh_button.clicked.connect(lambda: self.run_dir is not None and self.show_run(self.run_dir))
        self.try_button.clicked.connect(self.choose_image)
        self.matrix_view.cellClicked.connect(lambda t, p: self.set_filter((t, p) if t != p else None))
        self.pairs.itemSelectionChanged.connect(self._pair_selected)
        self.show_all_button.clicked.connect(lambda: self.set_filter(None))
        self.gallery.currentItemChanged.connect(self._current_changed)
        self.gallery.itemClicked.connect(self._mistake_clicked)
        self.trial.started.connect(lambda name: self.details_caption.setText(f"Classifying <b>{escape_html(name)}</b>…"))
        self.trial.tried.connect(self._tried)
        self.trial.refused.connect(self.details.show_refusal)
        self.trial.busyChanged.connect(self._update_buttons)
        self._update_buttons()

    # -- evaluating ------------------------------------------------------------------------
    def is_busy(self) -> bool:
        return (self._call is not None and self._call.is_running()) or self.trial.is_running()

    @property
    def shown(self) -> Any:
        """The Mistake or Prediction in the Top-5 box."""
        return self.details.shown

    def wait(self) -> None:
        """Cancel the evaluation and wait for both background calls to end (closing the window)."""
        self._cancel[0] = True
        self._pending = self.trial.pending = None
        for call in (self._call, self.trial.call, *self.heatmap.calls):
            # Trap: the worker's "done" reaches QThread.quit() queued through this (GUI) thread, so a plain
            # wait() here would wait forever for a quit that this very wait keeps from being delivered.
            while call is not None and not call.wait(50):
                QCoreApplication.processEvents()

    def show_run(self, run_dir: Path) -> None:
        """Evaluate ``run_dir`` in the background; a newer request replaces one still running."""
        run_dir = Path(run_dir)
        if self._call is not None:
            self._cancel[0] = True  # the running one gives up at its next batch
            self._pending = run_dir
            return
        self.run_dir = run_dir
        self.heatmap.set_run(run_dir)
        self.error = ""
        self.title.setText(f"<b>Results of run {run_dir.name}</b>")
        self.summary.setText("Evaluating on the validation images…")
        self.notes.hide()
        self._cancel = cancel = [False]
        self._progress = (0, 0)
        self.progress.setRange(0, 0)
        self.progress.show()
        progress = self._set_progress

        def work() -> Loaded:
            return load_results(run_dir, progress=progress, cancelled=lambda: cancel[0])

        call = BackgroundCall(work, f"Evaluating run {run_dir.name}", self)
        call.succeeded.connect(self._loaded)
        call.failed.connect(lambda message, _detail: self._failed(run_dir, message))
        call.finished.connect(lambda: self._finished(call))
        self._call = call
        call.start()
        self.timer.start()
        self._update_buttons()

    def _set_progress(self, done: int, total: int) -> None:  # called from the worker thread
        self._progress = (done, total)

    def _show_progress(self) -> None:
        done, total = self._progress
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _loaded(self, loaded: Loaded) -> None:
        if self._cancel[0]:
            return
        self._thumbs = loaded.thumbs
        self.set_evaluation(loaded.evaluation)

    def _failed(self, run_dir: Path, message: str) -> None:
        if self._cancel[0]:
            return  # replaced by a newer request (or the window is closing): nothing to say
        self.error = message
        self.evaluation = None
        self._clear_views(f"Could not evaluate run {run_dir.name}.")
        self.summary.setText(f"<b style='color:#b00020'>Could not evaluate run {run_dir.name}:</b> {escape_html(message)}")
        self.failed.emit(message)

    def _finished(self, call: BackgroundCall) -> None:
        if self._call is call:
            self._call = None
        call.deleteLater()
        self.timer.stop()
        self.progress.hide()
        pending, self._pending = self._pending, None
        if pending is not None:
            self.show_run(pending)
        self._update_buttons()

    # -- showing ---------------------------------------------------------------------------
    def set_evaluation(self, evaluation: Any) -> None:
        """Fill every view from an Evaluation (workbench.evaluate)."""
        self.evaluation = evaluation
        ev = evaluation
        accuracy = f"{ev.accuracy:.1%}" if ev.accuracy is not None else "—"
        self.summary.setText(f"Validation accuracy <b>{accuracy}</b> ({ev.correct:,} of {ev.total:,} images; "
                             f"chance {1 / len(ev.classes):.1%}) · {escape_html(ev.data)} · weights: "
                             f"{escape_html(ev.weights)}")
        notes = list(ev.notices) + ([ev.hint] if ev.hint else [])
        self.notes.setText("\n".join(notes))
        self.notes.setVisible(bool(notes))
        self.matrix_view.set_matrix(ev.classes, ev.matrix)
        fill_per_class(self.per_class, ev)
        fill_confused_pairs(self.pairs, ev)
        self.filter = None
        self._fill_gallery()
        self.evaluated.emit(ev)
        self._update_buttons()

    def _clear_views(self, placeholder: str) -> None:
        self.matrix_view.clear(placeholder)
        self.per_class.setRowCount(0)
        self.pairs.setRowCount(0)
        self.mistakes.clear()
        self._update_buttons()

    def set_filter(self, cell: tuple[int, int] | None) -> None:
        """Show only the mistakes of one (true, predicted) pair, or all of them (None)."""
        self.filter = cell
        self.matrix_view.select(cell)
        if cell is None:
            self.pairs.clearSelection()
        self._fill_gallery()

    def _pair_selected(self) -> None:
        items = self.pairs.selectedItems()
        first = self.pairs.item(items[0].row(), 0) if items else None
        if first is not None:
            true, predicted = first.data(Qt.ItemDataRole.UserRole)
            self.set_filter((int(true), int(predicted)))

    def visible_mistakes(self) -> list[Any]:
        """The mistakes the gallery shows, in order."""
        return gallery_mistakes(self.evaluation, self.filter)

    def _fill_gallery(self) -> None:
        self.mistakes.fill(self.evaluation, self._thumbs, self.filter)

    def _current_changed(self, item: QListWidgetItem | None, _old: Any) -> None:
        if item is not None:  # arrow keys walk the gallery too
            self._mistake_clicked(item)

    def _mistake_clicked(self, item: QListWidgetItem) -> None:
        i = item.data(Qt.ItemDataRole.UserRole)
        if self.evaluation is None or i is None:
            return
        mistake = self.evaluation.mistakes[int(i)]
        if self.shown is mistake:
            return
        ev = self.evaluation
        try:
            from workbench.evaluate import thumbnail

            img = thumbnail(mistake.item, PREVIEW).convert("RGBA")
            pixmap: QPixmap | None = rgba_pixmap((img.width, img.height, img.tobytes()))
        except WorkbenchError:
            pixmap = None
        caption = (f"<b>{escape_html(mistake.name)}</b><br>true: <b style='color:#1b7f3b'>"
                   f"{escape_html(ev.classes[mistake.true])}</b> · predicted: <b style='color:#b00020'>"
                   f"{escape_html(ev.classes[mistake.predicted])}</b> ({mistake.confidence:.1%})")
        self.details.show_top(mistake, pixmap, caption, mistake.top, ev.classes[mistake.true])
        self.heatmap.show_mistake(mistake.item.load, mistake.predicted, mistake.true, ev.classes)

    def top_rows(self) -> list[tuple[str, str]]:
        """The top-5 table as the user reads it: (label, probability) per row."""
        return self.details.rows()

    # -- trying an image -------------------------------------------------------------------
    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Try an image", "", IMAGE_FILTER)
        if path:
            self.try_image(path)

    def try_image(self, path: str | Path) -> None:
        """Classify one image file with the evaluated model, in the background; the top-5 shows here."""
        self.trial.try_image(path)

    def _tried(self, path: Path, prediction: Any, rgba: RGBA) -> None:
        best = prediction.top[0] if prediction.top else None
        caption = f"<b>{escape_html(path.name)}</b> (your image)"
        if best is not None:
            caption += f"<br>predicted: <b>{escape_html(best.label)}</b> ({best.prob:.1%})"
        self.details.show_top(prediction, rgba_pixmap(rgba), caption, prediction.top, None)
        self.predicted.emit(prediction)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if dropped_image(event) is not None and self.evaluation is not None:
            event.acceptProposedAction()
        else:
            event.ignore()  # projects and model files go on to the window

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.try_image(path)

    def _update_buttons(self) -> None:
        ready = self.evaluation is not None and self.evaluation.module is not None
        self.try_button.setEnabled(ready)
        self.refresh_button.setEnabled(self.run_dir is not None and self._call is None)

