"""Starting a run from the window (checks first, a new head when the data's classes differ), locking the editors
while it trains, and adopting its trained model when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QStandardPaths, QTimer

from workbench.edit_session import without_pretrained
from workbench.errors import WorkbenchError
from workbench_ui.dialogs import ask_yes_no, show_error

if TYPE_CHECKING:
    from workbench_ui.data_panel import DataScan
    from workbench_ui.main_window import MainWindow


class TrainingController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.close_after_stop = False  # the user asked to close while training: close when the run has stopped

    def start_training(self, resume: bool = False) -> None:
        w, ws = self.window, self.session.workspace
        panel = w.train_panel
        if ws is None or panel.is_running():
            return
        wrong = panel.wrong_settings()
        if wrong and not resume:
            show_error(w, "A setting was not stored", "Fix the value marked in red on the Training tab first:\n"
                       + "\n".join(wrong))
            w.tabs.setCurrentWidget(panel)
            return
        scan: DataScan | None = w.data_panel.scan
        if scan is None:
            show_error(w, "No training data", "Choose the training images on the Data tab first "
                       f"({w.data_panel.status.text()}).")
            w.tabs.setCurrentWidget(w.data_panel)
            return
        classes = len(scan.classes)
        if ws.backbone.spec.num_classes != classes and not resume:
            question = (f"The model's head has {ws.backbone.spec.num_classes} outputs but the data has {classes} "
                        f"classes. Rebuild the model with a new {classes}-class head? (The layers you froze stay "
                        "frozen; the new head starts from random weights.)")
            if ask_yes_no(w, "Replace the classifier head?", question):
                self._rebuild_head_then_train(classes)
            return
        errors = [f"• {p}" for p in self.session.problems if p.is_error and p.code != "class-count-mismatch"]
        if errors and not resume and not ask_yes_no(w, "The plan has errors", "\n".join(errors) + "\n\nStart anyway?"):
            return
        run_dir = panel.resumable_run if resume else self.new_run_dir()
        processes = panel.processes.choice()

        def prepare() -> Any:
            from workbench.training.prepare import build_trainer

            if processes is not None:  # torchrun in the background; rank 0's reports come back here
                from workbench.multi_process_launch import MultiProcessRun

                return MultiProcessRun(ws, run_dir, processes, resume=resume)
            return build_trainer(ws, run_dir, resume=resume)

        w.tabs.setCurrentWidget(panel)
        panel.start(prepare, run_dir, resume)

    def new_run_dir(self) -> Path:
        """runs/<time> beside the project file, or in this window's runs folder: where the Runs tab looks."""
        from workbench.run_folder import RunDir

        if self.session.project_path is not None:
            return RunDir.timestamped(Path(self.session.project_path).resolve().parent / "runs").path
        root = self.window.runs_root or Path(QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.AppDataLocation) or Path.home() / ".workbench") / "runs"
        return RunDir.timestamped(root).path

    def _rebuild_head_then_train(self, classes: int) -> None:
        self.session.plan.model.num_classes = classes
        plan, project = self.session.plan, self.session.project_path
        start = self.session.start_weights()

        def load() -> Any:
            from workbench.workspace import Workspace

            if start is None:
                return Workspace.from_plan(plan, project)
            # an opened run's weights, not the plan's initial ones (the new head's shape differs: it stays new)
            ws = Workspace.from_plan(without_pretrained(plan), project)
            ws.take_weights(start)
            ws.plan.model.pretrained = plan.model.pretrained
            return ws

        def done(ws: Any) -> None:
            self.session.set_workspace(ws, project)
            self.session.set_dirty(True)
            self.start_training()

        self.window.tasks.run(load, f"Rebuilding the model with a {classes}-class head", done,
                              "Could not rebuild the model")

    def training_changed(self, running: bool) -> None:
        """While a run trains, nothing edits the plan or replaces the model (the Trainer reads them)."""
        w = self.window
        w.tree_panel.set_locked(running)
        w.undo_redo.update()
        for widget in (w.groups_panel, w.data_panel, w.model_panel):
            widget.setEnabled(not running)
        for action in (w.new_action, w.open_action, w.open_model_action, w.demo_action,
                       w.export_action, w.recent_menu.menuAction()):
            action.setEnabled(not running)
        if not running and self.close_after_stop:
            self.close_after_stop = False
            QTimer.singleShot(0, w.close)

    def stop_then_close(self) -> None:
        """Stop the run after its batch; the window closes once the checkpoint is written."""
        self.close_after_stop = True
        self.window.statusBar().showMessage("Stopping training; the window closes when the checkpoint is written…")
        self.window.train_panel.stop()

    def run_finished(self, state: str) -> None:
        """A finished or stopped run's trained model becomes the workspace's (the Trainer trained a copy).

        A failed run leaves the workspace's model as it was before the run.
        """
        w = self.window
        run_dir = w.train_panel.run_dir
        trained = w.train_panel.take_trained()
        ws = self.session.workspace
        if run_dir is not None and trained is not None and ws is not None and state in ("finished", "stopped"):
            from workbench.run_catalog import read_run

            ws.adopt(trained)
            self.session.model_replaced()  # trained BatchNorm statistics: the plan's warnings change
            info = read_run(run_dir)
            info.status = state  # what the run reported, whatever its files say a moment before it exits
            self.session.set_weights_label(info.weights_label())
        from workbench.run_folder import RunDir

        if run_dir is not None and state in ("finished", "stopped") and RunDir(run_dir).spec.is_file():
            w.results_panel.show_run(run_dir)  # the validation results, evaluated in the background
        if run_dir is not None and run_dir.parent not in [r.resolve() for r in w.runs.run_roots()]:
            try:
                w.runs_panel.add_run_folder(run_dir)
            except WorkbenchError:
                pass  # the run never wrote its files (it failed before its first checkpoint)
        w.runs_panel.refresh()
