"""The Training tab: settings, Start / Pause / Resume / Stop, progress, live plots and a run log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from workbench.plan import OPTIMIZERS, SCHEDULERS, TrainConfig
from workbench.schema_limits import field_limits
from workbench_ui.device_picker import DevicePicker
from workbench_ui.look import primary
from workbench_ui.number_boxes import SchemaIntBox
from workbench_ui.optimization_rows import OptimizationRows
from workbench_ui.plots import TrainingPlots
from workbench_ui.problems_view import ProblemsList
from workbench_ui.run_log import RunLog
from workbench_ui.run_timing import format_duration, time_left_text
from workbench_ui.session import WorkbenchSession
from workbench_ui.workers import TrainingRun

AMP_CHOICES = (("auto", "auto (bf16 where native, else off)"), ("bf16", "bf16"), ("fp16", "fp16 (CUDA)"),
               ("off", "off (float32)"))


class TrainPanel(QWidget):
    runningChanged = Signal(bool)
    startRequested = Signal(bool)  # resume the last stopped run?
    failed = Signal(str, str)
    runFinished = Signal(str)  # the last state kind: finished, stopped or failed

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.run: TrainingRun | None = None
        self.trained: Any = None  # workbench.run_loading.TrainedModel of the run that just ended
        self.run_dir: Path | None = None
        self.last_state = ""
        self.resumable_run: Path | None = None
        self._paused = False
        self._steps_total = 0
        self._epoch_records: list[dict[str, Any]] = []  # this run's epochs, for the log's hints
        self._epoch_seconds: dict[int, float] = {}  # how long each finished epoch took (the time-left estimate)
        self.hint = ""

        # Limits from the schema; a number outside them stays typed, marked wrong with the reason, and is not stored.
        self.epochs = SchemaIntBox(field_limits(TrainConfig, "epochs"))
        self.batch_size = SchemaIntBox(field_limits(TrainConfig, "batch_size"))
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.scheduler = QComboBox()
        self.scheduler.addItems(list(SCHEDULERS))
        self.device = QComboBox()
        self.device.addItem("auto (best available)", "auto")
        self.device.setToolTip("Devices found on this machine")
        self.amp = QComboBox()
        for key, label in AMP_CHOICES:
            self.amp.addItem(label, key)
        self.amp.setToolTip("[train] amp. auto: bf16 (fp16 where bf16 is missing) on CUDA, bf16 on a CPU with AMX "
                            "or AVX512-BF16, float32 elsewhere; the run's first line says which it chose")
        self.augment = QCheckBox("Random augmentation")
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        form.addRow("Epochs", self.epochs)
        form.addRow("", self.epochs.problem)
        form.addRow("Batch size", self.batch_size)
        form.addRow("", self.batch_size.problem)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("LR schedule", self.scheduler)
        form.addRow("Device", self.device)
        self.processes = DevicePicker()  # several processes under torchrun (ui/device_picker.py)
        form.addRow("Processes", self.processes)
        form.addRow("Mixed precision", self.amp)
        self.optimization = OptimizationRows(session, self)
        self.optimization.add_to(form)
        form.addRow(self.augment)

        self.start_button = QPushButton("▶  Start training")
        primary(self.start_button)
        self.continue_button = QPushButton("Continue stopped run")
        self.continue_button.setToolTip("Resume the last stopped run from its checkpoint")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current batch and write a checkpoint")
        controls = QGridLayout()
        controls.addWidget(self.start_button, 0, 0, 1, 2)
        controls.addWidget(self.pause_button, 1, 0)
        controls.addWidget(self.resume_button, 1, 1)
        controls.addWidget(self.stop_button, 2, 0)
        controls.addWidget(self.continue_button, 2, 1)

        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.position = QLabel("Not started")
        self.speed = QLabel("–")
        self.eta = QLabel("–")
        stats = QFormLayout()
        stats.addRow("Position", self.position)
        stats.addRow("Throughput", self.speed)
        stats.addRow("Time left", self.eta)
        progress_box = QGroupBox("Progress")
        progress_layout = QVBoxLayout(progress_box)
        self.problems = ProblemsList(session)  # the plan's problems, right above Start
        progress_layout.addWidget(self.problems)
        progress_layout.addLayout(controls)
        progress_layout.addWidget(self.progress)
        progress_layout.addLayout(stats)

        self.log = RunLog()
        log_box = QGroupBox("Run log")
        QVBoxLayout(log_box).addWidget(self.log)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(settings)
        left_layout.addWidget(progress_box)
        left_layout.addWidget(log_box, 1)
        left.setMinimumWidth(300)
        left.setMaximumWidth(420)

        self.plots = TrainingPlots()
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.plots)
        split.setStretchFactor(1, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(split)

        self.epochs.valueChanged.connect(lambda v: self._set_train("epochs", int(v)))
        self.batch_size.valueChanged.connect(lambda v: self._set_train("batch_size", int(v)))
        self.optimizer.currentTextChanged.connect(lambda v: self._set_train("optimizer", v))
        self.scheduler.currentTextChanged.connect(lambda v: self._set_train("scheduler", v))
        self.device.currentIndexChanged.connect(lambda *_: self._set_train("device", self.device.currentData()))
        self.amp.currentIndexChanged.connect(lambda *_: self._set_train("amp", self.amp.currentData()))
        self.augment.toggled.connect(lambda v: self._set_train("augment", bool(v)))
        self.start_button.clicked.connect(lambda: self.startRequested.emit(False))
        self.continue_button.clicked.connect(lambda: self.startRequested.emit(True))
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        session.workspaceChanged.connect(self.sync_from_plan)
        self.sync_from_plan()

    # -- settings ------------------------------------------------------------------------
    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        current = self.session.plan.train.device
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItem("auto (best available)", "auto")
        for device_id, description in devices:
            self.device.addItem(f"{device_id}: {description}", device_id)
        self.device.blockSignals(False)
        self.processes.set_devices(devices)
        self.sync_from_plan()
        if self.device.findData(current) < 0:
            self.device.addItem(f"{current} (not found here)", current)
            self.device.setCurrentIndex(self.device.count() - 1)

    def sync_from_plan(self) -> None:
        train = self.session.plan.train
        widgets = (self.epochs, self.batch_size, self.optimizer, self.scheduler, self.device, self.amp, self.augment)
        for w in widgets:
            w.blockSignals(True)
        self.epochs.setValue(train.epochs)
        self.batch_size.setValue(train.batch_size)
        self.optimizer.setCurrentText(train.optimizer)
        self.scheduler.setCurrentText(train.scheduler)
        index = self.device.findData(train.device)
        self.device.setCurrentIndex(max(index, 0))
        self.amp.setCurrentIndex(max(self.amp.findData(train.amp), 0))
        self.augment.setChecked(train.augment)
        for w in widgets:
            w.blockSignals(False)
        self._update_buttons()

    def _set_train(self, key: str, value: Any) -> None:
        if getattr(self.session.plan.train, key) != value:
            self.session.edit(lambda plan: setattr(plan.train, key, value))

    def wrong_settings(self) -> list[str]:
        """The settings typed but refused (shown in red with the reason): Start waits until they are fixed."""
        return [f"{name}: {box.problem.text()}" for name, box in (("Epochs", self.epochs),
                                                                    ("Batch size", self.batch_size)) if box.is_wrong()]

    # -- running ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.run is not None and self.run.is_running()

    def start(self, prepare: Callable[[], Any], run_dir: Path | None, resume: bool = False) -> None:
        """``prepare()`` runs in the worker thread and returns a Trainer."""
        if self.run is not None:
            return
        self._epoch_seconds = {}
        if not resume:
            self.plots.clear()
            self.log.clear()
            self._epoch_records, self.hint = [], ""
        self.run_dir = run_dir
        self.last_state = ""
        self._paused = False
        self._steps_total = 0
        self.progress.setRange(0, 0)  # busy until the first step arrives (opening data, building the trainer)
        self.position.setText("Preparing data and model…")
        self.run = TrainingRun(prepare, self)
        self.run.steps.connect(self._on_steps)
        self.run.epoch.connect(self._on_epoch)
        self.run.state.connect(self._on_state)
        self.run.failed.connect(self._on_failed)
        self.run.finished.connect(self._on_finished)
        self.run.start()
        self.add_log("Preparing: opening the data and building the trainer…")
        self._update_buttons()
        self.runningChanged.emit(True)

    def pause(self) -> None:
        if self.run is not None:
            self.run.pause()
            self.pause_button.setEnabled(False)
            self.position.setText(self.position.text() + " — pausing after this batch…")

    def resume(self) -> None:
        if self.run is not None:
            self.run.resume()
            self.resume_button.setEnabled(False)

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.stop_button.setEnabled(False)
            self.pause_button.setEnabled(False)
            self.position.setText("Stopping after this batch…")

    def wait(self, msecs: int = -1) -> bool:
        return True if self.run is None else self.run.wait(msecs)

    def _on_steps(self, reports: list) -> None:
        if not reports:
            return
        self.plots.add_steps([r.global_step for r in reports], [r.loss for r in reports], [r.lrs for r in reports])
        last = reports[-1]
        total = last.batches * self.session.plan.train.epochs
        if total != self._steps_total:
            self._steps_total = total
            self.progress.setRange(0, total)
        self.progress.setValue(min(last.global_step, total))
        epochs = self.session.plan.train.epochs
        self.position.setText(f"epoch {last.epoch + 1}/{epochs} · batch {last.batch}/{last.batches} · "
                              f"loss {last.loss:.4f}")
        self.speed.setText(f"{last.images_per_s:,.0f} images/s")
        self.eta.setText(time_left_text(last, self.session.plan, self._epoch_seconds))

    def _on_epoch(self, report: Any) -> None:
        self._epoch_seconds[report.epoch] = report.seconds
        self.plots.add_epoch(report.epoch, report.train_loss, report.val_loss, report.train_accuracy,
                             report.val_accuracy)
        val = (f", val loss {report.val_loss:.4f}, val accuracy {report.val_accuracy:.1%}"
               if report.val_loss is not None and report.val_accuracy is not None else "")
        self.add_log(f"Epoch {report.epoch + 1}/{report.epochs}: train loss {report.train_loss:.4f}, "
                      f"accuracy {report.train_accuracy:.1%}{val} ({format_duration(report.seconds)})")
        self._epoch_records.append({"train_loss": report.train_loss, "train_accuracy": report.train_accuracy,
                                    "val_accuracy": report.val_accuracy})
        self._show_hint()

    def _show_hint(self) -> None:
        """Once per run: a pattern in the epochs so far worth a word (workbench.hints), highlighted in the log."""
        ws = self.session.workspace
        if self.hint or ws is None:
            return
        from workbench.hints import epoch_hint, hint_context

        hint = epoch_hint(self._epoch_records, ws.backbone.spec.num_classes, **hint_context(ws))
        if hint:
            self.hint = hint
            self.log.add_hint(f"Hint — {hint}")

    def _on_state(self, report: Any) -> None:
        self.last_state = report.kind
        self.add_log(report.message)
        if report.kind in ("started", "resumed") and "run_dir" in report.details:
            self.run_dir = Path(str(report.details["run_dir"]))
        if report.kind == "paused":
            self._paused = True
            self.position.setText(f"Paused ({report.message})")
            self.speed.setText("–")
        elif report.kind == "resumed":
            self._paused = False
        elif report.kind == "stopped":
            self.resumable_run = self.run_dir
        elif report.kind == "finished":
            self.resumable_run = None
            self.eta.setText("done")
        self._update_buttons()

    def _on_failed(self, message: str, detail: str) -> None:
        from workbench.run_folder import RunDir

        self.last_state = "failed"
        if self.run_dir is not None and RunDir(self.run_dir).checkpoint.is_file():
            self.resumable_run = self.run_dir  # a crashed rank, a full disk: Continue resumes the last checkpoint
        self.add_log(f"Failed: {message}")
        self.failed.emit(message, detail)

    def _on_finished(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            # The model the run trained (a copy of the workspace's): the window adopts it (runFinished).
            self.trained = run.trainer.trained if run.trainer is not None else None
            run.deleteLater()
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        if self.last_state == "stopped":
            self.position.setText("Stopped; a checkpoint was written")
        elif self.last_state == "finished":
            self.position.setText("Finished")
        elif self.last_state == "failed":
            self.position.setText("Failed (see the log)")
        self._paused = False
        self._update_buttons()
        self.runningChanged.emit(False)
        self.runFinished.emit(self.last_state)

    def take_trained(self) -> Any:
        """The model the run that just ended trained (None after a failure), handed over once."""
        trained, self.trained = self.trained, None
        return trained

    def show_run(self, run_dir: Path, resumable: bool) -> None:
        """Show a finished or stopped run's curves (from its metrics.jsonl); Continue resumes it."""
        from workbench.run_catalog import read_metrics
        from workbench.run_folder import RunDir

        self.plots.clear()
        self._epoch_records, self.hint = [], ""
        steps, losses, lrs = [], [], []
        for r in read_metrics(RunDir(run_dir).metrics):
            if r.get("type") == "step":
                steps.append(r.get("global_step", len(steps) + 1))
                losses.append(r.get("loss", float("nan")))
                lrs.append(r.get("lrs") or {})
            elif r.get("type") == "epoch":
                self.plots.add_epoch(r.get("epoch", 0), r.get("train_loss", float("nan")), r.get("val_loss"),
                                     r.get("train_accuracy", float("nan")), r.get("val_accuracy"))
                self._epoch_records.append(r)
        self.plots.add_steps(steps, losses, lrs)
        self.plots.redraw()
        self.run_dir = run_dir
        self.resumable_run = run_dir if resumable else None
        self.add_log(f"Opened run {run_dir} ({len(steps):,} steps)")
        self._show_hint()
        self._update_buttons()

    def add_log(self, text: str) -> None:
        """A line in the run log (what the window did, a plugin that failed to load, a run's progress)."""
        self.log.add(text)

    def _update_buttons(self) -> None:
        running = self.run is not None
        loaded = self.session.workspace is not None
        self.start_button.setEnabled(loaded and not running)
        self.continue_button.setEnabled(loaded and not running and self.resumable_run is not None)
        self.pause_button.setEnabled(running and not self._paused and self.run is not None
                                     and self.run.trainer is not None and self.last_state != "stopping")
        self.resume_button.setEnabled(running and self._paused)
        self.stop_button.setEnabled(running)
        for w in (self.epochs, self.batch_size, self.optimizer, self.scheduler, self.device, self.amp, self.augment,
                  self.processes):
            w.setEnabled(not running)
        self.optimization.set_enabled(not running)
