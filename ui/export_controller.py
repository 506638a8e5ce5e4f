"""The Export dialog from the window: for the model shown, or for a run's weights (the workspace unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from workbench.errors import WorkbenchError
from workbench_ui.dialogs import show_error

if TYPE_CHECKING:
    from workbench_ui.main_window import MainWindow


class ExportController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.dialog: Any = None  # the ExportDialog last opened

    def open_export(self) -> Any:
        """The export dialog for the model the window shows; warns when it is untrained but runs have weights."""
        from workbench_ui.export_dialog import ExportDialog

        w, ws = self.window, self.session.workspace
        if ws is None:
            show_error(w, "Nothing to export", "Load a model first.")
            return None
        import tomli_w

        from workbench.project import plan_to_dict

        recipe = tomli_w.dumps(plan_to_dict(ws.plan))
        default_dir = w.train_panel.run_dir or self.session.plan.base_dir or Path.home()
        warning = ""
        runs = w.runs_panel.runs_with_weights()
        if self.session.untrained and runs:
            warning = (f"The model holds its initial weights — not trained — although this project has "
                       f"{len(runs)} run(s) with trained weights (latest: {runs[-1].name}). Export the untrained "
                       "weights anyway?\n\nTo export a run, select it on the Runs panel and press Export.")
        self.dialog = ExportDialog(ws.backbone.module, ws.backbone.spec, recipe, Path(default_dir), w,
                                   weights_label=self.session.weights_label, untrained_warning=warning,
                                   plan=ws.plan)
        self.dialog.open()
        return self.dialog

    def export_run(self, run_dir: Path) -> Any:
        """The export dialog for a run's weights (the workspace is not changed)."""
        from workbench.run_catalog import read_run
        from workbench.run_loading import load_run
        from workbench_ui.export_dialog import ExportDialog

        try:
            trained = load_run(run_dir)
        except WorkbenchError as exc:
            show_error(self.window, "Cannot export this run", str(exc))
            return None
        self.dialog = ExportDialog(trained.module, trained.spec, trained.recipe_toml, run_dir, self.window,
                                   weights_label=read_run(run_dir).weights_label(), plan=trained.plan)
        self.dialog.open()
        return self.dialog

    def wait(self) -> None:
        """Wait for an export still running (closing the window)."""
        if self.dialog is not None and self.dialog.is_busy():
            self.dialog.call.wait()
