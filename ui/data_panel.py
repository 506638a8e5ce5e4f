"""The Data tab: any installed dataset plugin (demo digits, image folder, feature table, …); classes with counts,
sample thumbnails, problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench.plan import DataConfig
from workbench.plugins import DatasetChoice, dataset_choices
from workbench.schema_limits import field_limits
from workbench_ui.look import muted
from workbench_ui.number_boxes import set_schema_range
from workbench_ui.session import WorkbenchSession
from workbench_ui.widgets import InputSizeEdit
from workbench_ui.workers import BackgroundCall

THUMBS_PER_CLASS = 6
THUMB_SIZE = 56


@dataclass
class DataScan:
    """What a scan of the data found, as plain values (made in a worker thread)."""

    source: str
    classes: list[str]
    counts: dict[str, tuple[int, int]]
    problems: list[str]
    skipped: int
    thumbnails: list[tuple[str, int, int, bytes]] = field(default_factory=list)  # class, w, h, RGBA bytes
    unit: str = "images"  # "rows" for a feature table


def scan_data(config: DataConfig, base_dir: Path | None) -> DataScan:
    from workbench.data import open_images, thumbnails
    from workbench.tables import LabelledTable

    images = open_images(config, base_dir)
    thumbs = []
    for name, img in thumbnails(images, THUMBS_PER_CLASS, THUMB_SIZE):
        rgba = img.convert("RGBA")
        thumbs.append((name, rgba.width, rgba.height, rgba.tobytes()))
    return DataScan(images.source or config.dataset, list(images.classes), images.counts(),
                    list(images.problems), images.skipped, thumbs,
                    "rows" if isinstance(images, LabelledTable) else "images")


class DataPanel(QWidget):
    problem = Signal(str)
    scanned = Signal(object)  # DataScan

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.scan: DataScan | None = None
        self._calls: list[BackgroundCall] = []

        # Every installed dataset plugin, as it describes itself: a third-party dataset appears here too.
        # Listed once the plugins are loaded (refresh_choices): importing them imports torch, which the
        # window must not wait for at start-up.
        self.choices: list[DatasetChoice] = []
        self._choices_loaded = False
        self.dataset = QComboBox()
        self.folder = QLineEdit(placeholderText="/path/to/images")
        self.browse = QPushButton("Browse…")
        self.val_split = QDoubleSpinBox(decimals=2, singleStep=0.05)
        self.val_split.setKeyboardTracking(False)
        self.val_split.setToolTip("Share of each class held out for validation (when there is no val folder)")
        set_schema_range(self.val_split, field_limits(DataConfig, "val_split"))
        self.rescan = QPushButton("Rescan")
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        source_box = QGroupBox("Data")
        form = QFormLayout(source_box)
        form.addRow("Dataset", self.dataset)
        self.path_label = QLabel("Folder")
        form.addRow(self.path_label, folder_row)
        split_row = QHBoxLayout()
        split_row.addWidget(self.val_split)
        split_row.addStretch(1)
        split_row.addWidget(self.rescan)
        form.addRow("Validation split", split_row)
        self.input_size = InputSizeEdit()
        self.input_size.setMaximumWidth(160)
        self.input_hint = QLabel("channels × height × width the images are resized to; the layer tree's shapes follow")
        muted(self.input_hint)
        self.input_hint.setWordWrap(True)  # never sets the tab's minimum width
        size_row = QHBoxLayout()
        size_row.addWidget(self.input_size)
        size_row.addWidget(self.input_hint, 1)
        form.addRow("Model input", size_row)

        self.status = QLabel("Choose a dataset.")
        self.status.setWordWrap(True)
        self.mismatch = QLabel("")  # the data's classes against the model's head, before Start
        self.mismatch.setWordWrap(True)
        self.mismatch.setObjectName("classMismatch")
        self.mismatch.setStyleSheet("color: #b00020")
        self.mismatch.hide()
        self.classes = QTableWidget(0, 3)
        self.classes.setHorizontalHeaderLabels(["Class", "Train", "Val"])
        self.classes.verticalHeader().hide()
        self.classes.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.classes.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.classes.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.classes.setMinimumWidth(240)
        self.classes.verticalHeader().setDefaultSectionSize(22)
        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.thumbs.setGridSize(QSize(THUMB_SIZE + 16, THUMB_SIZE + 24))
        self.thumbs.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbs.setMovement(QListView.Movement.Static)
        self.thumbs.setSelectionMode(QListView.SelectionMode.NoSelection)
        self.problems = QListWidget()
        self.problems.setMaximumHeight(110)

        classes_box = QGroupBox("Classes")
        QVBoxLayout(classes_box).addWidget(self.classes)
        thumbs_box = self.thumbs_box = QGroupBox("Samples")
        QVBoxLayout(thumbs_box).addWidget(self.thumbs)
        split = QSplitter()
        split.addWidget(classes_box)
        split.addWidget(thumbs_box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([300, 760])
        split.setChildrenCollapsible(False)
        problems_box = QGroupBox("Problems found")
        QVBoxLayout(problems_box).addWidget(self.problems)
        problems_box.setMaximumHeight(150)

        layout = QVBoxLayout(self)
        layout.addWidget(source_box)
        layout.addWidget(self.status)
        layout.addWidget(self.mismatch)
        layout.addWidget(split, 1)
        layout.addWidget(problems_box)

        self.dataset.activated.connect(lambda index: self._set_config(dataset=self.dataset.itemData(index)))
        self.folder.editingFinished.connect(lambda: self._set_config(path=self.folder.text().strip() or None))
        self.browse.clicked.connect(self._browse)
        self.val_split.valueChanged.connect(lambda v: self._set_config(val_split=round(float(v), 4)))
        self.rescan.clicked.connect(self.start_scan)
        self.input_size.sizeEntered.connect(self._set_input_size)
        self.input_size.rejected.connect(lambda message: self.problem.emit(message))
        session.problemsChanged.connect(self._show_mismatch)
        session.shapesChanged.connect(self._sync_input_size)
        session.workspaceChanged.connect(self.sync_from_plan)
        self.sync_from_plan(scan=False)

    def sync_from_plan(self, scan: bool = True) -> None:
        config = self.session.plan.data
        for w in (self.dataset, self.folder, self.val_split):
            w.blockSignals(True)
        index = self.dataset.findData(config.dataset)
        if index < 0:  # a project naming a dataset plugin that is not installed: show it, the scan says why
            missing = " (not installed)" if self._choices_loaded else ""
            self.dataset.addItem(f"{config.dataset}{missing}", config.dataset)
            index = self.dataset.count() - 1
        self.dataset.setCurrentIndex(index)
        self.folder.setText(config.path or "")
        self.val_split.setValue(config.val_split)
        for w in (self.dataset, self.folder, self.val_split):
            w.blockSignals(False)
        self._sync_input_size()
        self._update_enabled()
        if scan:
            self.start_scan()

    def refresh_choices(self) -> None:
        """List the installed dataset plugins (loads them; the window calls this once torch is imported)."""
        self.choices = dataset_choices()
        self._choices_loaded = True
        self.dataset.blockSignals(True)
        self.dataset.clear()
        for choice in self.choices:
            self.dataset.addItem(choice.title, choice.name)
        self.dataset.blockSignals(False)
        self.sync_from_plan(scan=False)

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        if not self._choices_loaded:  # shown before the background start-up finished
            self.refresh_choices()
        super().showEvent(event)

    def _sync_input_size(self) -> None:
        """Show the size the model runs at: the plan's, else the loaded model's default."""
        ws = self.session.workspace
        size = self.session.plan.model.input_size or (ws.backbone.spec.input_size if ws is not None else None)
        self.input_size.set_size(size)
        self.input_size.setPlaceholderText("load a model first" if ws is None else "C×H×W")

    def _set_input_size(self, size: tuple[int, int, int] | None) -> None:
        from dataclasses import fields

        from workbench.plan import ModelConfig

        def change(plan: Any) -> None:
            values = {f.name: getattr(plan.model, f.name) for f in fields(ModelConfig)}
            plan.model = ModelConfig(**{**values, "input_size": size})  # validated like the project file

        shown = "×".join(map(str, size)) if size else "default"
        error = self.session.edit(change, f"Input size {shown}")
        if error:
            self._sync_input_size()
            self.problem.emit(error)

    def _report_facts(self, scan: DataScan | None) -> None:
        from workbench.preflight import DataFacts

        facts = None if scan is None else DataFacts(len(scan.classes), sum(t for t, _ in scan.counts.values()))
        self.session.set_data_facts(facts)

    def _show_mismatch(self) -> None:
        found = [p for p in self.session.problems if p.code == "class-count-mismatch"]
        self.mismatch.setText(f"✖ {found[0].message}" if found else "")
        self.mismatch.setVisible(bool(found))

    def _choice(self) -> DatasetChoice:
        name = self.session.plan.data.dataset
        for choice in self.choices:
            if choice.name == name:
                return choice
        return DatasetChoice(name, name, "folder")

    def _update_enabled(self) -> None:
        choice = self._choice()
        needs_path = choice.path_kind != "none"
        self.folder.setEnabled(needs_path)
        self.browse.setEnabled(needs_path)
        self.path_label.setText("File" if choice.path_kind == "file" else "Folder")
        self.folder.setPlaceholderText({"file": "/path/to/table.npz or .csv", "none": "not needed"}
                                       .get(choice.path_kind, "/path/to/images"))

    def _set_config(self, **values: Any) -> None:
        config = self.session.plan.data
        if all(getattr(config, k) == v for k, v in values.items()):
            return

        def change(plan: Any) -> None:
            for key, value in values.items():
                setattr(plan.data, key, value)

        error = self.session.edit(change)
        if error:
            self.problem.emit(error)
        self._update_enabled()
        self.start_scan()

    def _browse(self) -> None:
        choice = self._choice()
        if choice.path_kind == "file":
            path, _ = QFileDialog.getOpenFileName(self, f"Choose a file for {choice.title}", self.folder.text(),
                                                  choice.file_filter or "All files (*)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose an image folder", self.folder.text())
        if path:
            self.folder.setText(path)
            self._set_config(path=path)

    def is_scanning(self) -> bool:
        return any(c.is_running() for c in self._calls)

    def wait(self) -> None:
        """Wait for the scans still running (closing the window: a running QThread must not be destroyed)."""
        for call in list(self._calls):
            call.wait()

    def start_scan(self) -> None:
        if not self._choices_loaded:  # a scan needs the plugin anyway (and a model, so torch, is loaded)
            self.refresh_choices()
        config = DataConfig(**vars(self.session.plan.data))
        choice = self._choice()
        if choice.path_kind != "none" and not config.path:
            what = "a file" if choice.path_kind == "file" else "a folder"
            self._show(None, f"Choose {what} for {choice.title[:1].lower() + choice.title[1:]}.")
            return
        self.status.setText("Reading the data…")
        call = BackgroundCall(lambda: scan_data(config, self.session.plan.base_dir), "scan data", self)
        call.succeeded.connect(lambda result: self._show(result))
        call.failed.connect(lambda message, _detail: self._show(None, message, error=True))
        call.finished.connect(lambda: self._calls.remove(call))
        self._calls.append(call)
        call.start()

    def _show(self, scan: DataScan | None, message: str = "", error: bool = False) -> None:
        self.scan = scan
        self.classes.setRowCount(0)
        self.thumbs.clear()
        self.problems.clear()
        self._report_facts(scan)
        if scan is None:
            self.status.setText(f"<b style='color:#b00020'>{message}</b>" if error else message)
            if error:
                self.problems.addItem(message)
            return
        n_train = sum(t for t, _ in scan.counts.values())
        n_val = sum(v for _, v in scan.counts.values())
        self.status.setText(f"<b>{scan.source}</b>: {len(scan.classes)} classes, {n_train:,} training and "
                            f"{n_val:,} validation {scan.unit}" + (f"; {scan.skipped:,} files skipped" if scan.skipped else ""))
        self.classes.setRowCount(len(scan.classes))
        for row, name in enumerate(scan.classes):
            train, val = scan.counts.get(name, (0, 0))
            for col, text in enumerate((name, f"{train:,}", f"{val:,}")):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.classes.setItem(row, col, item)
        for name, width, height, rgba in scan.thumbnails:
            image = QImage(rgba, width, height, QImage.Format.Format_RGBA8888).copy()
            item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), name)
            item.setToolTip(f"class {name}")
            self.thumbs.addItem(item)
        self.thumbs_box.setTitle("Samples" if scan.unit == "images" else f"Samples: none, the data are {scan.unit} "
                                 "of numbers")
        for text in scan.problems:
            self.problems.addItem(text)
        if not scan.problems:
            none = QListWidgetItem("No problems: every file decoded and every class has images." if scan.unit == "images"
                                   else f"No problems: every class has {scan.unit}.")
            none.setForeground(Qt.GlobalColor.darkGreen)
            self.problems.addItem(none)
        self.scanned.emit(scan)
