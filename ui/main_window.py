"""The main window: lays out the panels, menus and docks, and wires them to the controllers that do the work
(file_actions, training_controller, runs_controller, export_controller, background_tasks); settings and closing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workbench.demo import DEMO_MODEL
from workbench_ui.background_tasks import BackgroundTasks
from workbench_ui.compare_panel import ComparePanel
from workbench_ui.data_panel import DataPanel
from workbench_ui.dialogs import ask_yes_no, show_error
from workbench_ui.drop_handler import accepts_drag, dropped_path
from workbench_ui.export_controller import ExportController
from workbench_ui.file_actions import FileActions
from workbench_ui.groups_panel import GroupsPanel
from workbench_ui.model_panel import ModelPanel
from workbench_ui.results_panel import ResultsPanel
from workbench_ui.runs_controller import RunsController
from workbench_ui.runs_panel import RunsPanel
from workbench_ui.session import WorkbenchSession
from workbench_ui.summary_bar import SummaryBar
from workbench_ui.train_panel import TrainPanel
from workbench_ui.training_controller import TrainingController
from workbench_ui.tree_panel import TreePanel
from workbench_ui.undo_actions import UndoRedoActions

APP_NAME = "Model Surgery Workbench"


def default_settings() -> QSettings:
    return QSettings("ModelSurgeryWorkbench", "workbench")


class MainWindow(QMainWindow):
    def _fit_to_screen(self, width: int, height: int) -> None:
        """Start at the preferred size, but never larger than the screen's free area."""
        screen = QGuiApplication.primaryScreen()
        if screen is not None:
            free = screen.availableGeometry()
            width, height = min(width, free.width()), min(height, free.height() - 30)  # title bar
        self.resize(width, height)

    def __init__(self, settings: QSettings | None = None, runs_root: Path | None = None) -> None:
        super().__init__()
        from workbench_ui.gui_gc import GuiThreadCollector

        self._collector = GuiThreadCollector(self)
        self.destroyed.connect(self._collector.stop)
        self.settings = settings or default_settings()
        self.runs_root = runs_root
        self.session = WorkbenchSession(self)
        self.tasks = BackgroundTasks(self)
        self._closing = False
        self.setAcceptDrops(True)
        self.setWindowTitle(APP_NAME)
        self._fit_to_screen(1400, 860)

        self.model_panel = ModelPanel()
        self.tree_panel = TreePanel(self.session)
        self.groups_panel = GroupsPanel(self.session)
        self.data_panel = DataPanel(self.session)
        self.train_panel = TrainPanel(self.session)
        self.summary_bar = SummaryBar(self.session)
        self.compare_panel = ComparePanel(self.session, runs_root)
        self.files = FileActions(self)
        self.training = TrainingController(self)
        self.runs = RunsController(self)
        self.exports = ExportController(self)
        self.runs_panel = RunsPanel(self.session, self.runs.run_roots)
        self.results_panel = ResultsPanel()

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.tree_panel, "Layers")
        self.tabs.addTab(self.data_panel, "Data")
        self.tabs.addTab(self.train_panel, "Training")
        self.tabs.addTab(self.results_panel, "Results")
        self.tabs.addTab(self.compare_panel, "Compare")
        self.tabs.addTab(self.runs_panel, "Runs")
        from workbench_ui.look_panel import LookPanel, connect_to_tree

        self.look_panel = LookPanel(self.session)
        self.tabs.addTab(self.look_panel, "Look inside")
        connect_to_tree(self.look_panel, self.tree_panel)
        self.look_panel.failed.connect(lambda m, d: show_error(self, "Look inside", m, d))
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(4, 4, 4, 4)
        central_layout.addWidget(self.tabs, 1)
        central_layout.addWidget(self.summary_bar)
        self.setCentralWidget(central)

        self.model_dock = self._dock("Model", "modelDock", self.model_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.groups_dock = self._dock("Groups && learning rates", "groupsDock", self.groups_panel,
                                      Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.model_dock, self.groups_dock], [260, 320], Qt.Orientation.Horizontal)

        self.busy_label, self.busy_bar = self.tasks.label, self.tasks.bar
        self.statusBar().addPermanentWidget(self.busy_label)
        self.statusBar().addPermanentWidget(self.busy_bar)

        self._build_actions()
        self.model_panel.loadRequested.connect(self.files.load_model)
        self.model_panel.openFileRequested.connect(self.open_path)
        for panel in (self.tree_panel, self.groups_panel, self.data_panel):
            panel.problem.connect(lambda message: show_error(self, "That change was not applied", message))
        self.tree_panel.notice.connect(self._notice)
        self.train_panel.startRequested.connect(self.training.start_training)
        self.train_panel.failed.connect(lambda m, d: show_error(self, "Training failed", m, d))
        self.train_panel.runningChanged.connect(self.training.training_changed)
        self.compare_panel.failed.connect(lambda m, d: show_error(self, "Comparison", m, d))
        self.compare_panel.driftReady.connect(self._show_drift)
        self.compare_panel.driftReady.connect(self.look_panel.set_drift)
        self.train_panel.runFinished.connect(self.training.run_finished)
        self.train_panel.problems.goTo.connect(self.show_control)
        self.runs_panel.openRequested.connect(lambda path: self.open_run(Path(path)))
        self.runs_panel.continueRequested.connect(lambda path: self.open_run(Path(path), then_continue=True))
        self.runs_panel.exportRequested.connect(lambda path: self.export_run(Path(path)))
        self.session.projectPathChanged.connect(self.runs_panel.refresh)
        self.tabs.currentChanged.connect(lambda *_: self.tabs.currentWidget() is self.runs_panel
                                         and self.runs_panel.refresh())
        self.session.dirtyChanged.connect(lambda dirty: self.setWindowModified(dirty))
        self.session.projectPathChanged.connect(self._update_title)
        self.session.workspaceChanged.connect(self._workspace_changed)
        self.session.planReplaced.connect(self.train_panel.sync_from_plan)
        self.session.planReplaced.connect(self.data_panel.sync_from_plan)
        self._update_title()
        self._restore_settings()
        self._workspace_changed()

    # -- construction ----------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot: Callable[[], Any], shortcut: QKeySequence.StandardKey | str | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(lambda *_: slot())
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        return action

    def _build_actions(self) -> None:
        self.new_action = self._action("&New project", self.files.new_project, QKeySequence.StandardKey.New,
                                       "Start over with no model")
        self.open_action = self._action("&Open project…", self.files.choose_project, QKeySequence.StandardKey.Open,
                                        "Open a workbench project (.toml)")
        self.open_model_action = self._action("Open &model file…", self.files.choose_model_file, "Ctrl+Shift+O",
                                              "Open an ONNX model or a checkpoint")
        self.demo_action = self._action("Open &demo", self.files.open_demo, None,
                                        f"{DEMO_MODEL} (pretrained) on handwritten digits with a "
                                        "gradual-unfreezing recipe")
        self.save_action = self._action("&Save", self.files.save, QKeySequence.StandardKey.Save, "Save the project")
        self.save_as_action = self._action("Save &as…", self.files.save_as, QKeySequence.StandardKey.SaveAs)
        self.export_action = self._action("&Export model…", self.exports.open_export, "Ctrl+E",
                                          "Export the (trained) model as safetensors, TorchScript or ONNX")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)

        menu = self.menuBar().addMenu("&File")
        for action in (self.new_action, self.open_action, self.open_model_action, self.demo_action):
            menu.addAction(action)
        self.recent_menu = QMenu("Open &recent", self)
        menu.addMenu(self.recent_menu)
        menu.addSeparator()
        menu.addAction(self.save_action)
        menu.addAction(self.save_as_action)
        menu.addSeparator()
        menu.addAction(self.export_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        edit = self.menuBar().addMenu("&Edit")
        # The plan is locked while training: no undo/redo then (the Trainer reads the plan).
        self.undo_redo = UndoRedoActions(self.session.undo_stack, self.train_panel.is_running, self)
        self.undo_action, self.redo_action = self.undo_redo.undo_action, self.undo_redo.redo_action
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        # Trap: on X11 the platform's Redo is Ctrl+Shift+Z itself; listed twice, Qt calls the key ambiguous and
        # nothing happens. Ctrl+Shift+Z everywhere, plus the platform's own keys (Ctrl+Y on Windows), once each.
        redo_keys = [QKeySequence("Ctrl+Shift+Z")]
        redo_keys += [k for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Redo) if k not in redo_keys]
        self.redo_action.setShortcuts(redo_keys)
        edit.addAction(self.undo_action)
        edit.addAction(self.redo_action)
        view = self.menuBar().addMenu("&View")
        view.addAction(self.model_dock.toggleViewAction())
        view.addAction(self.groups_dock.toggleViewAction())

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        for action in (self.new_action, self.open_action, self.save_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.demo_action)
        toolbar.addAction(self.export_action)

    # -- settings, title, recent files ---------------------------------------------------
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        self.files.refresh_recent()

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def recent_files(self) -> list[str]:
        return self.files.recent_files()

    def add_recent(self, path: str | Path) -> None:
        self.files.add_recent(path)

    def _update_title(self) -> None:
        path = self.session.project_path
        name = path.name if path else "untitled"
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")

    # -- background work ------------------------------------------------------------------
    def is_busy(self) -> bool:
        return self.tasks.is_busy()

    @property
    def calls(self) -> list[Any]:
        """The background loads running now."""
        return self.tasks.calls

    @property
    def export_dialog(self) -> Any:
        return self.exports.dialog

    def start_background_init(self) -> None:
        """Import torch and the model sources' lists off the UI thread, then fill the model and device lists."""

        def init() -> tuple[dict[str, str], list[tuple[str, str]]]:
            from workbench.sources import model_catalogue
            from workbench.training.devices import available_devices

            return model_catalogue(), available_devices()

        def done(result: tuple[dict[str, str], list[tuple[str, str]]]) -> None:
            from workbench.plugins import DATASETS, EXPORTERS, MODEL_SOURCES, registry

            names, devices = result
            reg = registry()
            for group in (MODEL_SOURCES, DATASETS, EXPORTERS):
                reg.plugins(group)
            for failure in reg.failures:  # a broken plugin is skipped, never silently
                self.train_panel.add_log(str(failure))
            if reg.failures:
                self.statusBar().showMessage(f"{len(reg.failures)} plugin(s) failed to load; see the log", 15000)
            self.data_panel.refresh_choices()
            self.model_panel.set_model_names(names)
            self.train_panel.set_devices(devices)

        self.tasks.run(init, "Loading PyTorch and the model list", done, "Could not start PyTorch")

    # -- the window's public actions (the controllers do the work) ----------------------------
    def open_path(self, path: str) -> None:
        """A dropped, recent or command-line file: a project, an ONNX model or a checkpoint."""
        self.files.open_path(path)

    def open_project(self, path: str | Path) -> None:
        self.files.open_project(path)

    def open_demo(self) -> None:
        self.files.open_demo()

    def new_project(self) -> None:
        self.files.new_project()

    def save_to(self, path: Path) -> bool:
        return self.files.save_to(path)

    def start_training(self, resume: bool = False) -> None:
        self.training.start_training(resume)

    def open_run(self, run_dir: Path, then_continue: bool = False) -> None:
        self.runs.open_run(run_dir, then_continue)

    def open_export(self) -> Any:
        return self.exports.open_export()

    def export_run(self, run_dir: Path) -> Any:
        return self.exports.export_run(run_dir)

    def _notice(self, message: str) -> None:
        """An edit did more than was clicked: said in the status bar and kept in the run log."""
        self.statusBar().showMessage(message, 20000)
        self.train_panel.add_log(message)

    def show_control(self, where: str) -> None:
        """Bring forward the control a problem is about ("data", "groups", "train", "layers")."""
        if where == "groups":
            self.groups_dock.show()
            self.groups_dock.raise_()
            return
        self.tabs.setCurrentWidget({"data": self.data_panel, "train": self.train_panel}.get(where, self.tree_panel))

    # -- window events ----------------------------------------------------------------------
    def _show_drift(self, drift: list) -> None:
        """The Compare tab's selected run: per-layer drift in the tree's Drift column."""
        from workbench_ui.qt_layer_tree import DRIFT

        if self.tree_panel.model is not None:
            self.tree_panel.model.set_drift(drift)
            self.tree_panel.view.resizeColumnToContents(DRIFT)

    def _workspace_changed(self) -> None:
        loaded = self.session.workspace is not None
        self.export_action.setEnabled(loaded and not self.train_panel.is_running())
        self.save_action.setEnabled(True)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        accepts_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = dropped_path(event)
        if path is not None:
            self.files.open_path(path)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.train_panel.is_running():
            event.ignore()
            if self.training.close_after_stop:
                return
            if ask_yes_no(self, "Training is running",
                          "Stop training and close? The run stops after the current batch and keeps a checkpoint "
                          "you can continue from."):
                self.training.stop_then_close()
            return
        if not self._closing and not self.files.confirm_discard():
            event.ignore()
            return
        self._closing = True
        # Loads and scans finish in seconds; a QThread destroyed while running would abort the process.
        self.tasks.wait()
        self.data_panel.wait()
        self.exports.wait()
        self.train_panel.wait()
        self.results_panel.wait()
        self.look_panel.wait()
        if self.compare_panel.run is not None:  # stops within one batch; a running QThread must not be destroyed
            self.compare_panel.stop()
            self.compare_panel.wait()
        self._save_settings()
        event.accept()
