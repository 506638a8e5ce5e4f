"""Runs from the window: where it looks for them, and opening one (to look at, or to continue training)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

if TYPE_CHECKING:
    from workbench_ui.main_window import MainWindow


class RunsController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session

    def run_roots(self) -> list[Path]:
        """Where this window looks for runs: beside the project file, and its own runs folder."""
        roots = []
        if self.session.project_path is not None:
            roots.append(Path(self.session.project_path))
        runs_root = self.window.runs_root
        if runs_root is not None and Path(runs_root).is_dir():
            roots.append(Path(runs_root))
        return roots

    def open_run(self, run_dir: Path, then_continue: bool = False) -> None:
        """Load a run's weights, recipe, freeze state and labels into the workspace; show its curves."""
        w = self.window
        if w.train_panel.is_running() or not w.files.confirm_discard():
            return
        project = self.session.project_path

        def load() -> Any:
            from workbench.run_catalog import read_run
            from workbench.run_loading import load_run_workspace, plan_for_project

            ws, recipe = load_run_workspace(run_dir)
            ws.plan = plan_for_project(ws.plan, project)  # a new run lands in the project's runs, not in this one
            # The plan says what the project says (the Runs tab compares it with each recipe); a rebuild
            # starts from the run's weights anyway (EditSession.start_weights).
            ws.plan.model.pretrained = bool(tomllib.loads(recipe).get("model", {}).get("pretrained", False))
            return ws, read_run(run_dir)

        def done(result: Any) -> None:
            ws, info = result
            self.session.set_workspace(ws, project, weights_label=info.weights_label())
            w.train_panel.show_run(run_dir, info.resumable)
            w.results_panel.show_run(run_dir)
            w.statusBar().showMessage(f"Opened {info.weights_label()}", 8000)
            if then_continue:
                self._after_data_scan(lambda: w.training.start_training(resume=True))
            else:
                w.tabs.setCurrentWidget(w.train_panel)

        w.tasks.run(load, f"Opening run {run_dir.name}", done, "Could not open the run")

    def _after_data_scan(self, action: Callable[[], None]) -> None:
        data_panel = self.window.data_panel
        if not data_panel.is_scanning():
            action()
            return

        def once(*_: Any) -> None:
            data_panel.scanned.disconnect(once)
            action()

        data_panel.scanned.connect(once)
