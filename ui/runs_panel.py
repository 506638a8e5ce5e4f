"""The Runs tab: every run of the project, its status and accuracy; open, continue, export, overlay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench.errors import WorkbenchError
from workbench.run_catalog import RunInfo, is_run_dir, read_run, runs_folder
from workbench_ui.look import muted
from workbench_ui.plots import _PALETTE, _plot
from workbench_ui.session import WorkbenchSession

COLUMNS = ("Run", "Status", "Started", "Epochs", "Best val acc", "Last val acc", "Differs from the plan")
_STATUS_COLOR = {"finished": "#1b7f3b", "running": "#1f5fbf", "stopped": "#8a6d00", "crashed": "#b00020",
                 "failed": "#b00020"}


class RunsPanel(QWidget):
    openRequested = Signal(str)
    continueRequested = Signal(str)
    exportRequested = Signal(str)

    def __init__(self, session: WorkbenchSession, roots: Callable[[], list[Path]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._roots = roots
        self._extra: list[Path] = []  # run folders opened by hand
        self.runs: list[RunInfo] = []

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)

        self.refresh_button = QPushButton("Refresh")
        self.add_button = QPushButton("Add run folder…")
        self.open_button = QPushButton("Open run")
        self.open_button.setToolTip("Load the run's weights, recipe, freeze state and labels into the workspace")
        self.continue_button = QPushButton("Continue run")
        self.continue_button.setToolTip("Continue a stopped or crashed run from its last checkpoint")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this run's weights")
        buttons = QHBoxLayout()
        for b in (self.open_button, self.continue_button, self.export_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.refresh_button)
        self.hint = QLabel("Select two or more runs to overlay their curves.")
        muted(self.hint)
        self.hint.setWordWrap(True)

        self.loss_plot = _plot("Training loss per step", "step", "loss")
        self.acc_plot = _plot("Validation accuracy per epoch", "epoch", "accuracy", integer_x=True)
        self.acc_plot.getPlotItem().setYRange(0.0, 1.0, padding=0.02)
        legend = self.acc_plot.getPlotItem().legend
        if legend is not None:  # accuracy climbs to the top right: keep the legend bottom right
            legend.setOffset((-10, -10))
        plots = QWidget()
        plots_layout = QHBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.addWidget(self.loss_plot)
        plots_layout.addWidget(self.acc_plot)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table, 1)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.hint)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(plots)
        splitter.setSizes([300, 260])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.refresh_button.clicked.connect(self.refresh)
        self.add_button.clicked.connect(self._choose_folder)
        self.open_button.clicked.connect(lambda: self._emit_selected(self.openRequested))
        self.continue_button.clicked.connect(lambda: self._emit_selected(self.continueRequested))
        self.export_button.clicked.connect(lambda: self._emit_selected(self.exportRequested))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda *_: self._emit_selected(self.openRequested))
        self._selection_changed()

    # -- data ------------------------------------------------------------------------------
    def add_run_folder(self, path: Path) -> None:
        if not is_run_dir(path):
            raise WorkbenchError(f"{path} is not a run folder (no project.toml or metrics.jsonl in it)")
        if path.resolve() not in [p.resolve() for p in self._extra]:
            self._extra.append(path)
        self.refresh()

    def run_dirs(self) -> list[Path]:
        seen: dict[Path, Path] = {}
        for root in self._roots():
            try:
                for p in runs_folder(root):
                    seen.setdefault(p.resolve(), p)
            except WorkbenchError:
                continue
        for p in self._extra:
            seen.setdefault(p.resolve(), p)
        return list(seen.values())

    def refresh(self) -> None:
        selected = {r.path for r in self.selected_runs()}
        plan = self.session.plan if self.session.workspace is not None else None
        self.runs = []
        for path in self.run_dirs():
            try:
                self.runs.append(read_run(path, plan, with_curves=True))
            except WorkbenchError:
                continue
        self.runs.sort(key=lambda r: (r.started, r.name))
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            epochs = f"{run.epochs_done}/{run.epochs_total}" if run.epochs_total else str(run.epochs_done)
            best = (f"{run.best_val_accuracy:.1%} (ep {run.best_epoch + 1})"
                    if run.best_val_accuracy is not None and run.best_epoch is not None else "—")
            last = f"{run.last_val_accuracy:.1%}" if run.last_val_accuracy is not None else "—"
            diff = "; ".join(run.differences) if run.differences else ("same recipe" if plan is not None else "")
            cells = (run.name, run.status, run.started.replace("T", " "), epochs, best, last, diff)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row)
                if col == 1:
                    item.setForeground(pg.mkColor(_STATUS_COLOR.get(run.status, "#333")))
                    if run.message:
                        item.setToolTip(run.message)
                if col == 0:
                    item.setToolTip(str(run.path))
                if col == 6 and diff:
                    item.setToolTip("\n".join(run.differences))
                self.table.setItem(row, col, item)
            if run.path in selected:
                self.table.selectRow(row)
        self.table.setSortingEnabled(True)
        self._selection_changed()

    def runs_with_weights(self) -> list[RunInfo]:
        return [r for r in self.runs if r.has_weights]

    def selected_runs(self) -> list[RunInfo]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        out = []
        for row in rows:
            item = self.table.item(row, 0)
            if item is not None:
                index = item.data(Qt.ItemDataRole.UserRole)
                if index is not None and index < len(self.runs):
                    out.append(self.runs[index])
        return out

    def select(self, names: list[str]) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() in names:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    # -- view ------------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        runs = self.selected_runs()
        one = runs[0] if len(runs) == 1 else None
        self.open_button.setEnabled(one is not None and one.has_weights and one.status != "running")
        self.continue_button.setEnabled(one is not None and one.resumable)
        self.export_button.setEnabled(one is not None and one.has_weights and one.status != "running")
        self._draw(runs)

    def _draw(self, runs: list[RunInfo]) -> None:
        for widget in (self.loss_plot, self.acc_plot):
            item = widget.getPlotItem()
            item.clear()
            if item.legend is not None:
                item.legend.clear()
        for i, run in enumerate(runs):
            color = _PALETTE[i % len(_PALETTE)]
            curves = run.curves
            if curves.get("step"):
                y = np.asarray(curves["loss"], dtype=float)
                self.loss_plot.getPlotItem().plot(curves["step"], np.where(np.isfinite(y), y, np.nan),
                                                  pen=pg.mkPen(color, width=1.5), name=run.name, connect="finite")
            if curves.get("epoch"):
                y = np.asarray(curves["val_accuracy"], dtype=float)
                self.acc_plot.getPlotItem().plot(curves["epoch"], y, pen=pg.mkPen(color, width=1.5), name=run.name,
                                                 symbol="o", symbolSize=6, symbolBrush=color, symbolPen=None,
                                                 connect="finite")
        self.acc_plot.getPlotItem().setYRange(0.0, 1.0, padding=0.02)

    def _emit_selected(self, signal: Signal) -> None:
        runs = self.selected_runs()
        if len(runs) == 1:
            signal.emit(str(runs[0].path))

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a run folder")
        if path:
            try:
                self.add_run_folder(Path(path))
            except WorkbenchError as exc:
                from workbench_ui.dialogs import show_error

                show_error(self, "Not a run folder", str(exc))
