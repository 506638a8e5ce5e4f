"""The File menu's work: open a model, project, demo or dropped file; save; unsaved changes; recent files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from workbench.backbone import LoadRequest
from workbench.errors import WorkbenchError
from workbench.model_request import model_config_from_request
from workbench.plan import FinetunePlan
from workbench.sources import capabilities
from workbench_ui.dialogs import ask_save_discard_cancel, show_error
from workbench_ui.model_panel import model_file_filter

if TYPE_CHECKING:
    from workbench_ui.main_window import MainWindow

MAX_RECENT = 10
PROJECT_FILTER = "Workbench projects (*.toml)"


class FileActions(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session

    def _busy_training(self) -> bool:
        return self.window.train_panel.is_running()

    # -- unsaved changes ----------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """True when there are no unsaved changes, or the user saved or discarded them."""
        if not self.session.dirty:
            return True
        answer = ask_save_discard_cancel(self.window, "Unsaved changes",
                                         "The project has unsaved changes. Save them first?")
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    # -- opening ------------------------------------------------------------------------------
    def load_model(self, request: LoadRequest) -> None:
        if self._busy_training() or not self.confirm_discard():
            return
        current = self.session.plan.copy()
        plan = FinetunePlan(model=model_config_from_request(request), data=current.data, train=current.train,
                            base_dir=current.base_dir)

        def load() -> Any:
            from workbench.sources import load_backbone
            from workbench.workspace import Workspace

            return Workspace.from_backbone(load_backbone(request), plan)

        name = Path(request.ref).name if capabilities(request.source or "").takes_files else request.ref
        self.window.tasks.run(load, f"Loading {name}", lambda ws: self.show_loaded(ws, None, request.ref),
                              "Could not load the model")

    def show_loaded(self, ws: Any, project: Path | None, recent: str | None) -> None:
        """A loaded workspace on screen: the Layers tab, and the file in the recent list."""
        self.session.set_workspace(ws, project)
        if capabilities(ws.plan.model.source).takes_names:
            self.window.model_panel.show_loaded(ws.plan.model.name, bool(ws.backbone.spec.pretrained))
        if recent and (project is not None or Path(recent).suffix):
            self.add_recent(recent)
        self.window.tabs.setCurrentWidget(self.window.tree_panel)

    def open_project(self, path: str | Path) -> None:
        from workbench.project import load_project

        path = Path(path)
        try:
            plan = load_project(path)
        except WorkbenchError as exc:
            show_error(self.window, "Could not open the project", str(exc))
            return

        def load() -> Any:
            from workbench.workspace import Workspace

            return Workspace.from_plan(plan, path)

        self.window.tasks.run(load, f"Opening {path.name}", lambda ws: self.show_loaded(ws, path, str(path)),
                              "Could not open the project")

    def open_demo(self) -> None:
        if self._busy_training() or not self.confirm_discard():
            return

        def load() -> Any:
            from workbench.demo import demo_plan
            from workbench.workspace import Workspace

            return Workspace.from_plan(demo_plan())

        self.window.tasks.run(load, "Loading the demo", lambda ws: self.show_loaded(ws, None, None),
                              "Could not load the demo")

    def open_path(self, path: str) -> None:
        """A dropped, recent or command-line file: a project, an ONNX model or a checkpoint."""
        from workbench.plugins import registry

        suffix = Path(path).suffix.lower()
        sources = registry().suffix_map()  # each model-source plugin declares its file suffixes
        if suffix == ".toml":
            if not self._busy_training() and self.confirm_discard():
                self.open_project(path)
        elif suffix in sources:
            self.load_model(self.window.model_panel.file_request(path, sources[suffix]))
        else:
            show_error(self.window, "Cannot open this file",
                       f"{Path(path).name}: expected a project (.toml) or a model file ({', '.join(sorted(sources))})")

    def choose_project(self) -> None:
        if self._busy_training() or not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Open project", "", PROJECT_FILTER)
        if path:
            self.open_project(path)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a model file", "", model_file_filter())
        if path:
            self.open_path(path)

    def new_project(self) -> None:
        if self._busy_training() or not self.confirm_discard():
            return
        self.session.set_workspace(None)

    # -- saving -------------------------------------------------------------------------------
    def save(self) -> bool:
        if self.session.project_path is None:
            return self.save_as()
        return self.save_to(self.session.project_path)

    def save_as(self) -> bool:
        start = str(self.session.project_path or Path.home() / "project.toml")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        if not path.endswith(".toml"):
            path += ".toml"
        return self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        from workbench.project import save_project

        try:
            save_project(self.session.plan, path)
        except (WorkbenchError, OSError) as exc:
            show_error(self.window, "Could not save the project", str(exc))
            return False
        self.session.set_project_path(path)
        self.session.set_dirty(False)
        self.add_recent(path)
        self.window.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    # -- recent files -------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.window.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.window.settings.setValue("recent", recent[:MAX_RECENT])
        self.refresh_recent()

    def refresh_recent(self) -> None:
        """The File menu's Open recent and the model panel's list."""
        recent = self.recent_files()
        menu = self.window.recent_menu
        menu.clear()
        for path in recent:
            menu.addAction(Path(path).name, lambda p=path: self.open_path(p)).setToolTip(path)
        menu.setEnabled(bool(recent))
        self.window.model_panel.set_recent(recent)
