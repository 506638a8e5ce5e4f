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

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from workbench.plan import TrainConfig
from workbench.schema_limits import field_limits
from workbench_ui.compare_charts import CompareCharts
from workbench_ui.compare_table import CompareTable
from workbench_ui.number_boxes import SchemaIntBox
from workbench_ui.session import WorkbenchSession
from workbench_ui.workers import GeneratorThread

DEFAULT_CHECKED = ("probe", "freeze", "full-lowlr", "discriminative", "gradual")


def strategy_choices() -> list[tuple[str, str]]:
    """(name, "syntax: description") of every registered strategy (plugins included), then ``plan``."""
    from workbench.compare import SPECIAL
    from workbench.strategies import registered

    return [(s.name, f"{s.syntax}: {s.description}") for s in registered().values()] + [("plan", f"plan: {SPECIAL['plan']}")]


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

        self.table = CompareTable()
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.charts = CompareCharts()  # across the whole width, below the picker and the table
        self.curves, self.scatter_plot, self.drift_plot = (self.charts.curves, self.charts.scatter_plot,
                                                           self.charts.drift_plot)

        top = QSplitter(Qt.Orientation.Horizontal)
        pick.setMaximumWidth(340)
        top.addWidget(pick)
        top.addWidget(self.table)
        top.setStretchFactor(1, 1)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(self.charts)
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
        self.table.clear_rows()
        self.charts.clear()

    def _on_event(self, event: Any) -> None:
        from workbench.training.reports import EpochReport, StepReport

        if event.kind == "start":
            self.table.set_status(event.strategy, "starting")
            self.status.setText(f"strategy {event.index + 1} of {event.count}: {event.strategy}")
        elif event.kind == "report" and isinstance(event.report, StepReport):
            r = event.report
            self.table.set_status(event.strategy, f"epoch {r.epoch + 1}, batch {r.batch}/{r.batches}")
        elif event.kind == "report" and isinstance(event.report, EpochReport):
            r = event.report
            self.table.set_status(event.strategy, f"epoch {r.epoch + 1}/{r.epochs} done")
            if r.val_accuracy is not None:
                self.charts.add_epoch(event.strategy, r.epoch + 1, 100 * r.val_accuracy)
        elif event.kind == "done":
            self._show_result(event.result)
        elif event.kind == "failed":
            self.table.set_status(event.strategy, f"failed: {event.error}", event.error or "")

    def _show_result(self, r: Any) -> None:
        self.results[r.name] = r
        self.table.show_result(r)
        self.charts.draw_scatter(list(self.results.values()))

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
        name = self.table.selected_name()
        return None if name is None else self.results.get(name)

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
        self.charts.draw_drift(result.name, [m.params for m in report.modules if m.params is not None])
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
