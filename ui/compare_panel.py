"""The Compare tab: pick strategies, train them in the background, compare accuracy against cost.

A view over ``workbench.compare.Comparison``: the comparison runs in its own QThread and
its events reach this panel as queued signals; Stop asks the running Trainer to stop
after its batch. A strategy that fails shows as failed in the table and the next starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench.plan import TrainConfig
from workbench.schema_limits import field_limits
from workbench_ui.number_boxes import SchemaIntBox
from workbench_ui.plots import IntegerAxis
from workbench_ui.session import WorkbenchSession
from workbench_ui.workers import GeneratorThread

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
DEFAULT_CHECKED = ("probe", "freeze", "full-lowlr", "discriminative", "gradual")
COLUMNS = ("Strategy", "Status", "Val top-1 %", "Best %", "Best epoch", "Train top-1 %", "Wall s", "Images/s",
           "Trainable", "Grads + opt. state MB", "Peak mem MB", "Cached")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


def strategy_choices() -> list[tuple[str, str]]:
    """(name, "syntax: description") of every registered strategy (plugins included), then ``plan``."""
    from workbench.compare import SPECIAL
    from workbench.strategies import registered

    return [(s.name, f"{s.syntax}: {s.description}") for s in registered().values()] + [("plan", f"plan: {SPECIAL['plan']}")]


class _SortItem(QTableWidgetItem):
    """Sorts by the number in SORT_ROLE (text columns sort by text)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:  # type: ignore[override]
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if a is None or b is None:
            return self.text() < other.text()
        return a < b


class CompareRun(GeneratorThread):
    """A Comparison in a worker thread; ``stop()`` is honoured within one batch."""

    event = Signal(object)
    STEP_EVERY_S = 0.1  # step progress is thinned so a fast cached run cannot flood the UI thread

    def __init__(self, comparison: Any, parent: QObject | None = None) -> None:
        super().__init__(self._events, "compare", parent)
        self.comparison = comparison
        self.yielded.connect(self.event)

    def _events(self) -> Iterator[Any]:
        from workbench.training.reports import EpochReport, StepReport

        last = 0.0
        for event in self.comparison.run():
            if event.kind == "report":
                if isinstance(event.report, StepReport):
                    if time.monotonic() - last < self.STEP_EVERY_S:
                        continue
                    last = time.monotonic()
                elif not isinstance(event.report, EpochReport):
                    continue
            yield event

    def stop(self) -> None:
        self.comparison.request_stop()


class ComparePanel(QWidget):
    failed = Signal(str, str)  # message, details: the window shows a dialog
    driftReady = Signal(object)  # per-node drift of the selected strategy's run, for the layer tree
    runningChanged = Signal(bool)

    def __init__(self, session: WorkbenchSession, runs_root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runs_root = runs_root
        self.run: CompareRun | None = None
        self.results: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        self._curves: dict[str, list[tuple[int, float]]] = {}

        self.choices = QListWidget()
        for key, text in strategy_choices():
            item = QListWidgetItem(text)
            item.setToolTip(text)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if key in DEFAULT_CHECKED else Qt.CheckState.Unchecked)
            self.choices.addItem(item)
        self.choices.setMaximumHeight(200)
        self.freeze_n = QSpinBox()
        self.freeze_n.setRange(0, 64)
        self.freeze_n.setValue(2)
        self.factor = QDoubleSpinBox()
        self.factor.setDecimals(3)
        self.factor.setRange(0.01, 1.0)
        self.factor.setSingleStep(0.05)
        self.factor.setValue(round(1 / 2.6, 3))
        self.epochs = SchemaIntBox(field_limits(TrainConfig, "epochs"))  # the schema's limits, as on the Training tab
        self.epochs.setValue(3)
        self.start_button = QPushButton("Run comparison")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.use_button = QPushButton("Use this plan")
        self.use_button.setToolTip("Copy the selected strategy's freezing, groups, schedule and LR into the project")
        self.use_button.setEnabled(False)
        self.status = QLabel("Pick strategies and press Run comparison.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("freeze:N — N", self.freeze_n)
        form.addRow("discriminative factor", self.factor)
        form.addRow("epochs per strategy", self.epochs)
        form.addRow("", self.epochs.problem)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.use_button):
            buttons.addWidget(b)
        pick = QGroupBox("Strategies")
        pick_layout = QVBoxLayout(pick)
        pick_layout.addWidget(self.choices)
        pick_layout.addLayout(form)
        pick_layout.addLayout(buttons)
        pick_layout.addWidget(self.status)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.curves = pg.PlotWidget(axisItems={"bottom": IntegerAxis("bottom")})  # epochs: no 1.5
        self.curves.getPlotItem().setTitle("val top-1 by epoch", size="10pt")
        self.curves.setLabel("bottom", "epoch")
        self.curves.setLabel("left", "val top-1 %")
        self.curves.showGrid(x=True, y=True, alpha=0.25)
        self.legend = self.curves.addLegend(offset=(-5, 5))
        self.scatter_plot = pg.PlotWidget()
        self.scatter_plot.getPlotItem().setTitle("accuracy vs time (★ Pareto)", size="10pt")
        self.scatter_plot.setToolTip("Best validation top-1 against wall time; ★ marks the Pareto front "
                                     "(no other strategy is both faster and more accurate)")
        self.scatter_plot.setLabel("bottom", "wall s")
        self.scatter_plot.setLabel("left", "best val top-1 %")
        self.scatter_plot.showGrid(x=True, y=True, alpha=0.25)
        self.drift_plot = pg.PlotWidget()
        self.drift_plot.getPlotItem().setTitle("drift by depth (selected strategy)", size="10pt")
        self.drift_plot.setLabel("bottom", "module (input → output)")
        self.drift_plot.setLabel("left", "‖W′−W‖/‖W‖")
        self._curve_items: dict[str, Any] = {}

        # Picker and table on top, the three charts across the whole width below.
        charts = QSplitter(Qt.Orientation.Horizontal)
        for w in (self.curves, self.scatter_plot, self.drift_plot):
            charts.addWidget(w)
        top = QSplitter(Qt.Orientation.Horizontal)
        pick.setMaximumWidth(340)
        top.addWidget(pick)
        top.addWidget(self.table)
        top.setStretchFactor(1, 1)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(charts)
        body.setStretchFactor(1, 1)
        body.setSizes([300, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(body)

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.use_button.clicked.connect(self.use_selected)
        session.workspaceChanged.connect(self._workspace_changed)
        self._workspace_changed()

    # -- choosing ---------------------------------------------------------------------------
    def _workspace_changed(self) -> None:
        ws = self.session.workspace
        if ws is not None:
            from workbench.compare import stage_count

            self.freeze_n.setMaximum(max(0, stage_count(ws.tree)))
            self.epochs.setValue(self.session.plan.train.epochs)
        self._sync()

    def _sync(self) -> None:
        self.start_button.setEnabled(self.session.workspace is not None and self.run is None)

    def strategy_text(self) -> str:
        names = []
        for i in range(self.choices.count()):
            item = self.choices.item(i)
            if item.checkState() != Qt.CheckState.Checked:
                continue
            key = item.data(Qt.ItemDataRole.UserRole)
            if key == "freeze":
                key = f"freeze:{self.freeze_n.value()}"
            elif key == "discriminative":
                key = f"discriminative:{self.factor.value():g}"
            names.append(key)
        return ",".join(names)

    def out_dir(self) -> Path:
        """runs/compare-<time> beside the project file (where the Runs tab and `workbench runs` look), else in
        the window's runs folder."""
        from workbench.run_catalog import COMPARE_PREFIX

        if self.session.project_path is not None:
            root = Path(self.session.project_path).resolve().parent / "runs"
        else:
            root = self.runs_root or Path.cwd() / "runs"
        return root / f"{COMPARE_PREFIX}{datetime.now():%Y%m%d-%H%M%S-%f}"

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        from workbench.compare import Comparison, parse_strategies
        from workbench.errors import WorkbenchError

        if self.session.workspace is None or self.run is not None:
            return
        if not self.epochs.commit():  # a refused number stays in red with its reason; nothing starts
            self.status.setText(f"not started: epochs per strategy {self.epochs.problem.text()}")
            return
        plan = self.session.plan.copy()
        if plan.base_dir is None:
            plan.base_dir = self.session.project_path.parent if self.session.project_path else Path.cwd()
        try:
            strategies = parse_strategies(self.strategy_text())
        except WorkbenchError as exc:
            self.failed.emit(str(exc), "")
            return
        self._reset()
        comparison = Comparison(plan, strategies, self.out_dir(), str(self.session.project_path or ""),
                                epochs=self.epochs.value(), start_weights=self.session.start_weights())
        self.run = CompareRun(comparison, self)
        self.run.event.connect(self._on_event)
        self.run.failed.connect(self._on_failed)
        self.run.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(f"comparing {len(strategies)} strategies in {comparison.out_dir} …")
        self.runningChanged.emit(True)
        self.run.start()

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.status.setText("stopping after this batch …")

    def wait(self) -> None:
        if self.run is not None:
            self.run.wait()

    def _reset(self) -> None:
        self.results.clear()
        self._rows.clear()
        self._curves.clear()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        self.table.setSortingEnabled(True)
        self.curves.clear()
        self.legend.clear()
        self._curve_items.clear()
        self.scatter_plot.clear()
        self.drift_plot.clear()

    def _row(self, name: str) -> int:
        """The strategy's current row (sorting moves rows)."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == name:
                return row
        self.table.setSortingEnabled(False)
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._set(row, 0, name)
        self.table.setSortingEnabled(True)
        return self._row(name)

    def _set(self, row: int, col: int, text: str, sort: float | None = None) -> None:
        item = _SortItem(text)
        item.setData(SORT_ROLE, sort)
        if sort is not None:
            item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
        self.table.setItem(row, col, item)

    def _on_event(self, event: Any) -> None:
        from workbench.training.reports import EpochReport, StepReport

        if event.kind == "start":
            self._set(self._row(event.strategy), 1, "starting")
            self.status.setText(f"strategy {event.index + 1} of {event.count}: {event.strategy}")
        elif event.kind == "report" and isinstance(event.report, StepReport):
            r = event.report
            self._set(self._row(event.strategy), 1, f"epoch {r.epoch + 1}, batch {r.batch}/{r.batches}")
        elif event.kind == "report" and isinstance(event.report, EpochReport):
            r = event.report
            self._set(self._row(event.strategy), 1, f"epoch {r.epoch + 1}/{r.epochs} done")
            if r.val_accuracy is not None:
                self._curves.setdefault(event.strategy, []).append((r.epoch + 1, 100 * r.val_accuracy))
                self._draw_curve(event.strategy)
        elif event.kind == "done":
            self._show_result(event.result)
        elif event.kind == "failed":
            row = self._row(event.strategy)
            self._set(row, 1, f"failed: {event.error}")
            self.table.item(row, 1).setForeground(pg.mkColor("#d62728"))
            self.table.item(row, 1).setToolTip(event.error or "")

    def _draw_curve(self, name: str) -> None:
        points = self._curves[name]
        item = self._curve_items.get(name)
        if item is None:
            color = _PALETTE[len(self._curve_items) % len(_PALETTE)]
            item = self.curves.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                    symbolBrush=color, name=name)
            self._curve_items[name] = item
        item.setData([p[0] for p in points], [p[1] for p in points])

    def _show_result(self, r: Any) -> None:
        self.results[r.name] = r
        row = self._row(r.name)
        self.table.setSortingEnabled(False)
        pct = (lambda v: ("-", None) if v is None else (f"{100 * v:.1f}", 100 * v))
        self._set(row, 1, "done")
        for col, value in ((2, r.val_top1), (3, r.val_top1_best), (5, r.train_top1)):
            self._set(row, col, *pct(value))
        self._set(row, 4, "-" if r.best_epoch is None else str(r.best_epoch + 1),
                  None if r.best_epoch is None else r.best_epoch + 1)
        self._set(row, 6, f"{r.wall_s:.1f}", r.wall_s)
        self._set(row, 7, f"{r.images_per_s:.0f}", r.images_per_s)
        self._set(row, 8, f"{r.trainable_params:,}", r.trainable_params)
        mem = r.grad_bytes + r.optimizer_state_bytes
        self._set(row, 9, f"{mem / 2**20:.1f}", mem)
        self._set(row, 10, f"{r.peak_mem_bytes / 2**20:.0f}", r.peak_mem_bytes)
        self._set(row, 11, "yes" if r.cached else "no")
        self.table.setSortingEnabled(True)
        self._draw_scatter()

    def _draw_scatter(self) -> None:
        from workbench.compare import pareto_front

        self.scatter_plot.clear()
        results = list(self.results.values())
        front = pareto_front(results)
        for r in results:
            if r.val_top1_best is None:
                continue
            on = r.name in front
            self.scatter_plot.plot([r.wall_s], [100 * r.val_top1_best], pen=None, symbol="star" if on else "o",
                                   symbolSize=16 if on else 9, symbolBrush="#d62728" if on else "#1f77b4")
            label = pg.TextItem(r.name, anchor=(0, 1), color="#444")
            label.setPos(r.wall_s, 100 * r.val_top1_best)
            self.scatter_plot.addItem(label)
        ordered = sorted((r for r in results if r.name in front), key=lambda r: r.wall_s)
        if len(ordered) > 1:
            self.scatter_plot.plot([r.wall_s for r in ordered], [100 * r.val_top1_best for r in ordered],
                                   pen=pg.mkPen("#d62728", width=1, style=Qt.PenStyle.DashLine))
        shown = [r for r in results if r.val_top1_best is not None]
        if shown:  # explicit range: auto-range can miss points added in the same event-loop turn
            xs, ys = [r.wall_s for r in shown], [100 * r.val_top1_best for r in shown]
            dx, dy = max(max(xs) - min(xs), 1.0) * 0.2, max(max(ys) - min(ys), 2.0) * 0.15
            self.scatter_plot.setXRange(min(xs) - dx, max(xs) + 2 * dx, padding=0)
            self.scatter_plot.setYRange(min(ys) - dy, max(ys) + dy, padding=0)

    def _on_failed(self, message: str, detail: str) -> None:
        self.status.setText(f"comparison failed: {message}")
        self.failed.emit(message, detail)

    def _on_finished(self) -> None:
        run, self.run = self.run, None
        self.stop_button.setEnabled(False)
        self._sync()
        if run is not None and not self.status.text().startswith("comparison failed"):
            comparison = run.comparison
            failed = f", {len(comparison.failed)} failed" if comparison.failed else ""
            how = "stopped" if comparison.stopped else "finished"
            self.status.setText(f"{how}: {len(comparison.results)} strategies done{failed}; runs in {comparison.out_dir}")
            if comparison.results:
                from workbench.compare import write_outputs

                try:
                    write_outputs(comparison, None)
                except OSError as exc:
                    self.failed.emit(f"could not write the comparison's table and chart: {exc}", "")
        self.runningChanged.emit(False)

    # -- using a result ----------------------------------------------------------------------
    def selected(self) -> Any:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.results.get(self.table.item(rows[0].row(), 0).text())

    def _selection_changed(self) -> None:
        result = self.selected()
        self.use_button.setEnabled(result is not None)
        if result is not None:
            self.show_drift(result)

    def show_drift(self, result: Any) -> None:
        """Drift of the selected strategy's run from its start: bars by depth, and the tree's Drift column."""
        from workbench.drift import diff_run_from_start, tree_drift
        from workbench.errors import WorkbenchError

        ws = self.session.workspace
        self.drift_plot.clear()
        try:
            report = diff_run_from_start(Path(result.run_dir))
        except WorkbenchError as exc:
            self.status.setText(f"no drift for {result.name}: {exc}")
            return
        values = [m.params for m in report.modules if m.params is not None]
        frozen = [v == 0.0 for v in values]
        self.drift_plot.addItem(pg.BarGraphItem(x=list(range(len(values))), height=values, width=0.8,
                                                brushes=[pg.mkBrush("#9aa7b8" if f else "#1f77b4") for f in frozen]))
        self.drift_plot.getPlotItem().getViewBox().autoRange()
        self.drift_plot.getPlotItem().setTitle(f"drift: {result.name} ({sum(frozen)}/{len(values)} unchanged)",
                                               size="10pt")
        self.drift_plot.setToolTip(f"‖W′−W‖/‖W‖ per module from input to output for {result.name}: "
                                   f"{sum(frozen)} of {len(values)} modules are exactly unchanged")
        if ws is not None and len(report.modules) and ws.tree.find_node(report.modules[0].path) is not None:
            self.driftReady.emit(tree_drift(report, ws.tree))

    def use_selected(self) -> None:
        """Copy the selected strategy's recipe (freezing, BN policy, groups, schedule, LR, epochs) into the project."""
        from workbench.project import load_project
        from workbench.run_folder import RunDir

        result = self.selected()
        if result is None:
            return
        chosen = load_project(RunDir(result.run_dir).project)

        def apply(plan: Any) -> None:
            plan.freeze = chosen.freeze
            plan.groups = chosen.groups
            plan.unfreeze = chosen.unfreeze
            plan.train.lr = chosen.train.lr
            plan.train.epochs = chosen.train.epochs
            plan.train.layer_decay = chosen.train.layer_decay

        ws = self.session.workspace
        if ws is not None and chosen.adapters != ws.plan.adapters:  # a lora strategy: the model changes shape
            from workbench.errors import WorkbenchError
            from workbench.workspace import with_adapter_config

            try:
                new = with_adapter_config(ws, chosen.adapters)
                apply(new.plan)
                new.resolve()
            except WorkbenchError as exc:
                self.failed.emit(f"could not use {result.name}: {exc}", "")
                return
            self.session.swap_workspace(new, f"Use the {result.name} plan")
            self.status.setText(f"the project now uses the {result.name} plan")
            return
        error = self.session.edit(apply)
        if error is not None:
            self.failed.emit(f"could not use {result.name}: {error}", "")
        else:
            self.status.setText(f"the project now uses the {result.name} plan")
