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

from PySide6.QtCore import QCoreApplication, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench.errors import WorkbenchError
from workbench_ui.confusion_view import ConfusionMatrixView
from workbench_ui.look import muted, warning_text
from workbench_ui.workers import BackgroundCall

THUMB = 64
PREVIEW = 112
MAX_GALLERY = 240  # the most confident mistakes; the rest are counted, not drawn
MAX_PAIRS = 20
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"
_RGBA = tuple[int, int, bytes]  # width, height, RGBA bytes (made off the GUI thread)


@dataclass
class Loaded:
    """What the worker hands back: the evaluation and thumbnails of the first mistakes."""

    evaluation: Any  # workbench.evaluate.Evaluation
    thumbs: list[_RGBA | None] = field(default_factory=list)


def load_results(run_dir: Path, progress: Any = None, cancelled: Any = None) -> Loaded:
    """Evaluate a run and make its gallery thumbnails (runs in a worker thread)."""
    from workbench.evaluate import evaluate_run, thumbnail

    evaluation = evaluate_run(run_dir, progress=progress, cancelled=cancelled)
    thumbs: list[_RGBA | None] = []
    for mistake in evaluation.mistakes[:MAX_GALLERY]:
        try:
            img = thumbnail(mistake.item, THUMB).convert("RGBA")
        except WorkbenchError:
            thumbs.append(None)
            continue
        thumbs.append((img.width, img.height, img.tobytes()))
    return Loaded(evaluation, thumbs)


def _pixmap(rgba: _RGBA) -> QPixmap:
    width, height, data = rgba
    return QPixmap.fromImage(QImage(data, width, height, QImage.Format.Format_RGBA8888).copy())


class _SortItem(QTableWidgetItem):
    """A cell shown as text but sorted by a number (UserRole)."""

    def __init__(self, text: str, key: float) -> None:
        super().__init__(text)
        self.setData(Qt.ItemDataRole.UserRole, key)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return float(self.data(Qt.ItemDataRole.UserRole)) < float(other.data(Qt.ItemDataRole.UserRole))


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(22)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return table


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
        self.shown: Any = None  # the Mistake or Prediction in the details pane
        self._call: BackgroundCall | None = None
        self._try_call: BackgroundCall | None = None
        self._pending: Path | None = None
        self._try_pending: Path | None = None
        self._cancel = [False]
        self._progress = (0, 0)
        self._thumbs: list[_RGBA | None] = []
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

        self.per_class = _table(["Class", "Correct", "Accuracy"])
        self.per_class.setSortingEnabled(True)
        per_class_box = QGroupBox("Per-class accuracy")
        QVBoxLayout(per_class_box).addWidget(self.per_class)
        self.pairs = _table(["True → predicted", "Images", "Share"])
        self.pairs.setToolTip("Click a pair to list its images")
        pairs_box = QGroupBox("Most confused")
        QVBoxLayout(pairs_box).addWidget(self.pairs)
        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(per_class_box)
        side.addWidget(pairs_box)
        side.setSizes([220, 160])

        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setGridSize(QSize(THUMB + 22, THUMB + 26))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(False)
        self.gallery_label = QLabel("")
        muted(self.gallery_label)
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.hide()
        gallery_head = QHBoxLayout()
        gallery_head.addWidget(self.gallery_label, 1)
        gallery_head.addWidget(self.show_all_button)
        gallery_box = QGroupBox("Misclassified validation images (most confident first)")
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.addLayout(gallery_head)
        gallery_layout.addWidget(self.gallery, 1)

        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW, PREVIEW)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("QLabel { background: palette(base); border: 1px solid palette(mid); }")
        self.details_caption = QLabel("Click a misclassified image, or try one of your own "
                                      "(“Try an image…” or drop a file here).")
        self.details_caption.setWordWrap(True)
        self.details_caption.setTextFormat(Qt.TextFormat.RichText)
        self.details_caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.top_table = _table(["Label", "Probability"])
        self.top_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.top_table.verticalHeader().setDefaultSectionSize(20)
        self.top_table.setMinimumHeight(5 * 20 + 26)
        text_column = QVBoxLayout()
        text_column.addWidget(self.details_caption)
        text_column.addWidget(self.top_table, 1)
        details_box = QGroupBox("Top-5")
        details_layout = QHBoxLayout(details_box)
        details_layout.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignTop)
        details_layout.addLayout(text_column, 1)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(matrix_box)
        upper.addWidget(side)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)
        upper.setSizes([500, 320])
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(gallery_box)
        lower.addWidget(details_box)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        lower.setSizes([440, 380])
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
        self._update_buttons()

    # -- evaluating ------------------------------------------------------------------------
    def is_busy(self) -> bool:
        return any(c is not None and c.is_running() for c in (self._call, self._try_call))

    def wait(self) -> None:
        """Cancel the evaluation and wait for both background calls to end (closing the window)."""
        self._cancel[0] = True
        self._pending = self._try_pending = None
        for call in (self._call, self._try_call):
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
        self.summary.setText(f"<b style='color:#b00020'>Could not evaluate run {run_dir.name}:</b> {_escape(message)}")
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
                             f"chance {1 / len(ev.classes):.1%}) · {_escape(ev.data)} · weights: "
                             f"{_escape(ev.weights)}")
        notes = list(ev.notices) + ([ev.hint] if ev.hint else [])
        self.notes.setText("\n".join(notes))
        self.notes.setVisible(bool(notes))
        self.matrix_view.set_matrix(ev.classes, ev.matrix)
        self._fill_per_class()
        self._fill_pairs()
        self.filter = None
        self._fill_gallery()
        self.evaluated.emit(ev)
        self._update_buttons()

    def _clear_views(self, placeholder: str) -> None:
        self.matrix_view.clear(placeholder)
        self.per_class.setRowCount(0)
        self.pairs.setRowCount(0)
        self.gallery.clear()
        self.gallery_label.setText("")
        self._update_buttons()

    def _fill_per_class(self) -> None:
        table, rows = self.per_class, self.evaluation.per_class()
        table.setSortingEnabled(False)
        table.setRowCount(len(rows))
        for row, c in enumerate(rows):
            name = _SortItem(c.name, float(c.index))
            name.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            acc = c.accuracy
            acc_item = _SortItem(f"{acc:.1%}" if acc is not None else "—", acc if acc is not None else -1.0)
            if acc is not None and acc < 1.0:
                acc_item.setForeground(QColor("#b00020") if acc < 0.5 else QColor("#8a5a00"))
            for col, item in enumerate((name, _SortItem(f"{c.correct:,} of {c.images:,}", c.correct), acc_item)):
                table.setItem(row, col, item)
        table.setSortingEnabled(True)
        table.sortItems(0, Qt.SortOrder.AscendingOrder)

    def _fill_pairs(self) -> None:
        ev = self.evaluation
        pairs = ev.confused_pairs(MAX_PAIRS)
        self.pairs.blockSignals(True)
        self.pairs.setRowCount(len(pairs))
        for row, pair in enumerate(pairs):
            text = QTableWidgetItem(f"{ev.classes[pair.true]} → {ev.classes[pair.predicted]}")
            text.setData(Qt.ItemDataRole.UserRole, (pair.true, pair.predicted))
            for col, item in enumerate((text, _SortItem(f"{pair.count:,}", pair.count),
                                        _SortItem(f"{pair.share:.1%}", pair.share))):
                self.pairs.setItem(row, col, item)
        self.pairs.blockSignals(False)

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
        if self.evaluation is None:
            return []
        shown = self.evaluation.mistakes[:MAX_GALLERY]
        if self.filter is not None:
            shown = [m for m in shown if (m.true, m.predicted) == self.filter]
        return shown

    def _fill_gallery(self) -> None:
        self.gallery.clear()
        ev = self.evaluation
        if ev is None:
            return
        index = {id(m): i for i, m in enumerate(ev.mistakes[:MAX_GALLERY])}
        shown = self.visible_mistakes()
        for mistake in shown:
            i = index[id(mistake)]
            thumb = self._thumbs[i] if i < len(self._thumbs) else None
            icon = QIcon(_pixmap(thumb)) if thumb is not None else QIcon()
            caption = f"{ev.classes[mistake.true]}→{ev.classes[mistake.predicted]}"
            item = QListWidgetItem(icon, caption)
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setToolTip(f"{mistake.name}\ntrue {ev.classes[mistake.true]}, predicted "
                            f"{ev.classes[mistake.predicted]} ({mistake.confidence:.1%})")
            self.gallery.addItem(item)
        total = len(ev.mistakes)
        if self.filter is not None:
            t, p = self.filter
            count = ev.matrix[t][p]
            more = f" (the first {len(shown)} shown)" if count > len(shown) else ""
            self.gallery_label.setText(f"true {ev.classes[t]} → predicted {ev.classes[p]}: "
                                       f"{count:,} image{'s' if count != 1 else ''}{more}")
        elif total == 0:
            self.gallery_label.setText("No mistakes: every validation image is classified correctly.")
        else:
            more = f"; the {MAX_GALLERY} most confident shown" if total > MAX_GALLERY else ""
            self.gallery_label.setText(f"{total:,} of {ev.total:,} validation images misclassified{more}")
        self.show_all_button.setVisible(self.filter is not None)

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
            pixmap: QPixmap | None = _pixmap((img.width, img.height, img.tobytes()))
        except WorkbenchError:
            pixmap = None
        caption = (f"<b>{_escape(mistake.name)}</b><br>true: <b style='color:#1b7f3b'>"
                   f"{_escape(ev.classes[mistake.true])}</b> · predicted: <b style='color:#b00020'>"
                   f"{_escape(ev.classes[mistake.predicted])}</b> ({mistake.confidence:.1%})")
        self._show_top(mistake, pixmap, caption, mistake.top, ev.classes[mistake.true])

    def _show_top(self, shown: Any, pixmap: QPixmap | None, caption: str, top: list[Any], truth: str | None) -> None:
        self.shown = shown
        if pixmap is None:
            self.preview.clear()
            self.preview.setText("(no preview)")
        else:
            self.preview.setPixmap(pixmap)
        self.details_caption.setText(caption)
        self.top_table.setRowCount(len(top))
        for row, t in enumerate(top):
            label = QTableWidgetItem(f"{row + 1}. {t.label}")
            prob = _SortItem(f"{t.prob:.1%}", t.prob)
            if truth is not None and t.label == truth:
                for item in (label, prob):
                    item.setForeground(QColor("#1b7f3b"))
                label.setToolTip("the true class")
            self.top_table.setItem(row, 0, label)
            self.top_table.setItem(row, 1, prob)

    def top_rows(self) -> list[tuple[str, str]]:
        """The top-5 table as the user reads it: (label, probability) per row."""
        rows = []
        for r in range(self.top_table.rowCount()):
            label, prob = self.top_table.item(r, 0), self.top_table.item(r, 1)
            rows.append((label.text() if label else "", prob.text() if prob else ""))
        return rows

    # -- trying an image -------------------------------------------------------------------
    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Try an image", "", IMAGE_FILTER)
        if path:
            self.try_image(path)

    def try_image(self, path: str | Path) -> None:
        """Classify one image file with the evaluated model, in the background; the top-5 shows here."""
        ev = self.evaluation
        if ev is None or ev.module is None:
            self._show_error_details(Path(path).name, "no model yet: train a run or open one first")
            return
        path = Path(path)
        if self._try_call is not None:
            self._try_pending = path  # the latest one runs when this one is done
            return
        self.details_caption.setText(f"Classifying <b>{_escape(path.name)}</b>…")

        def work() -> Any:
            from workbench.evaluate import thumbnail
            from workbench.predict import check_images

            check_images([str(path)])
            prediction = ev.classify(path)
            from workbench.data import Item

            img = thumbnail(Item(label=0, name=path.name, path=path), PREVIEW).convert("RGBA")
            return prediction, (img.width, img.height, img.tobytes())

        call = BackgroundCall(work, f"Classifying {path.name}", self)
        call.succeeded.connect(lambda result: self._tried(path, *result))
        call.failed.connect(lambda message, _detail: self._show_error_details(path.name, message))
        call.finished.connect(lambda: self._try_finished(call))
        self._try_call = call
        call.start()
        self._update_buttons()

    def _tried(self, path: Path, prediction: Any, rgba: _RGBA) -> None:
        best = prediction.top[0] if prediction.top else None
        caption = f"<b>{_escape(path.name)}</b> (your image)"
        if best is not None:
            caption += f"<br>predicted: <b>{_escape(best.label)}</b> ({best.prob:.1%})"
        self._show_top(prediction, _pixmap(rgba), caption, prediction.top, None)
        self.predicted.emit(prediction)

    def _show_error_details(self, name: str, message: str) -> None:
        self.shown = None
        self.preview.clear()
        self.top_table.setRowCount(0)
        self.details_caption.setText(f"<b style='color:#b00020'>Cannot classify {_escape(name)}:</b> "
                                     f"{_escape(message)}")

    def _try_finished(self, call: BackgroundCall) -> None:
        if self._try_call is call:
            self._try_call = None
        call.deleteLater()
        pending, self._try_pending = self._try_pending, None
        if pending is not None:
            self.try_image(pending)
        self._update_buttons()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _dropped_image(event) is not None and self.evaluation is not None:
            event.acceptProposedAction()
        else:
            event.ignore()  # projects and model files go on to the window

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = _dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.try_image(path)

    def _update_buttons(self) -> None:
        ready = self.evaluation is not None and self.evaluation.module is not None
        self.try_button.setEnabled(ready)
        self.refresh_button.setEnabled(self.run_dir is not None and self._call is None)


def _dropped_image(event: QDragEnterEvent | QDropEvent) -> str | None:
    urls = event.mimeData().urls()
    if len(urls) == 1 and urls[0].isLocalFile():
        path = urls[0].toLocalFile()
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
