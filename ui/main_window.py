"""The main window: composes the panels, owns background tasks, projects, settings and closing."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workbench.backbone import LoadRequest
from workbench.demo import DEMO_MODEL
from workbench.edit_session import without_pretrained
from workbench.errors import WorkbenchError
from workbench.model_request import model_config_from_request
from workbench.plan import FinetunePlan
from workbench_ui.compare_panel import ComparePanel
from workbench_ui.data_panel import DataPanel, DataScan
from workbench_ui.dialogs import ask_save_discard_cancel, ask_yes_no, show_error
from workbench_ui.groups_panel import GroupsPanel
from workbench_ui.model_panel import ModelPanel
from workbench_ui.results_panel import ResultsPanel
from workbench_ui.runs_panel import RunsPanel
from workbench_ui.session import WorkbenchSession
from workbench_ui.summary_bar import SummaryBar
from workbench_ui.train_panel import TrainPanel
from workbench_ui.tree_panel import TreePanel
from workbench_ui.undo_actions import UndoRedoActions
from workbench_ui.workers import BackgroundCall

APP_NAME = "Model Surgery Workbench"
MAX_RECENT = 10
PROJECT_FILTER = "Workbench projects (*.toml)"


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
        self.calls: list[BackgroundCall] = []
        self.export_dialog: Any = None
        self._close_after_stop = False
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
        self.runs_panel = RunsPanel(self.session, self._run_roots)
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

        self.busy_label = QLabel("")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(140)
        self.busy_bar.setMaximumHeight(14)
        self.statusBar().addPermanentWidget(self.busy_label)
        self.statusBar().addPermanentWidget(self.busy_bar)
        self._update_busy()

        self._build_actions()
        self.model_panel.loadRequested.connect(self.load_model)
        self.model_panel.openFileRequested.connect(self.open_path)
        for panel in (self.tree_panel, self.groups_panel, self.data_panel):
            panel.problem.connect(lambda message: show_error(self, "That change was not applied", message))
        self.tree_panel.notice.connect(self._notice)
        self.train_panel.startRequested.connect(self.start_training)
        self.train_panel.failed.connect(lambda m, d: show_error(self, "Training failed", m, d))
        self.train_panel.runningChanged.connect(self._training_changed)
        self.compare_panel.failed.connect(lambda m, d: show_error(self, "Comparison", m, d))
        self.compare_panel.driftReady.connect(self._show_drift)
        self.train_panel.runFinished.connect(self._run_finished)
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
        self.new_action = self._action("&New project", self.new_project, QKeySequence.StandardKey.New,
                                       "Start over with no model")
        self.open_action = self._action("&Open project…", self.choose_project, QKeySequence.StandardKey.Open,
                                        "Open a workbench project (.toml)")
        self.open_model_action = self._action("Open &model file…", self.choose_model_file, "Ctrl+Shift+O",
                                              "Open an ONNX model or a checkpoint")
        self.demo_action = self._action("Open &demo", self.open_demo, None,
                                        f"{DEMO_MODEL} (pretrained) on handwritten digits with a "
                                        "gradual-unfreezing recipe")
        self.save_action = self._action("&Save", self.save, QKeySequence.StandardKey.Save, "Save the project")
        self.save_as_action = self._action("Save &as…", self.save_as, QKeySequence.StandardKey.SaveAs)
        self.export_action = self._action("&Export model…", self.open_export, "Ctrl+E",
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
        self._refresh_recent()

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        recent = self.recent_files()
        self.recent_menu.clear()
        for path in recent:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_path(p)).setToolTip(path)
        self.recent_menu.setEnabled(bool(recent))
        self.model_panel.set_recent(recent)

    def _update_title(self) -> None:
        path = self.session.project_path
        name = path.name if path else "untitled"
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")

    # -- background work ------------------------------------------------------------------
    def run_background(self, fn: Callable[[], Any], label: str, on_success: Callable[[Any], None],
                       error_title: str = "Something went wrong",
                       on_failure: Callable[[], None] | None = None) -> BackgroundCall:
        call = BackgroundCall(fn, label, self)

        def failed(message: str, detail: str) -> None:
            if on_failure is not None:
                on_failure()
            show_error(self, error_title, message, detail)

        def succeeded(result: Any) -> None:
            try:
                on_success(result)
            except WorkbenchError as exc:
                show_error(self, error_title, str(exc))

        call.succeeded.connect(succeeded)
        call.failed.connect(failed)
        call.finished.connect(lambda: self._call_finished(call))
        self.calls.append(call)
        call.start()
        self._update_busy()
        return call

    def _call_finished(self, call: BackgroundCall) -> None:
        if call in self.calls:
            self.calls.remove(call)
        call.deleteLater()
        self._update_busy()

    def is_busy(self) -> bool:
        return bool(self.calls)

    def _update_busy(self) -> None:
        labels = [c.label for c in self.calls]
        self.busy_bar.setVisible(bool(labels))
        self.busy_label.setText("; ".join(labels) + "…" if labels else "")
        self.busy_label.setVisible(bool(labels))

    def start_background_init(self) -> None:
        """Import torch and timm off the UI thread, then fill the model list and the device list."""

        def init() -> tuple[list[str], list[tuple[str, str]]]:
            import timm

            from workbench.training.devices import available_devices

            return list(timm.list_models()), available_devices()

        def done(result: tuple[list[str], list[tuple[str, str]]]) -> None:
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
            timm_source = reg.plugins(MODEL_SOURCES).get("timm")
            self.model_panel.set_model_names(names, getattr(timm_source, "pretrained_availability", lambda _n: "none"))
            self.train_panel.set_devices(devices)

        self.run_background(init, "Loading PyTorch and timm", done, "Could not start PyTorch")

    # -- loading --------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """True when there are no unsaved changes, or the user saved or discarded them."""
        if not self.session.dirty:
            return True
        answer = ask_save_discard_cancel(self, "Unsaved changes",
                                         "The project has unsaved changes. Save them first?")
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def load_model(self, request: LoadRequest) -> None:
        if self.train_panel.is_running() or not self.confirm_discard():
            return
        current = self.session.plan.copy()
        plan = FinetunePlan(model=model_config_from_request(request), data=current.data, train=current.train,
                            base_dir=current.base_dir)

        def load() -> Any:
            from workbench.sources import load_backbone
            from workbench.workspace import Workspace

            return Workspace.from_backbone(load_backbone(request), plan)

        name = Path(request.ref).name if request.source in ("onnx", "checkpoint") else request.ref
        self.run_background(load, f"Loading {name}", lambda ws: self._show_workspace(ws, None, request.ref),
                            "Could not load the model")

    def _show_workspace(self, ws: Any, project: Path | None, recent: str | None) -> None:
        self.session.set_workspace(ws, project)
        if ws.plan.model.source == "timm":
            self.model_panel.show_loaded(ws.plan.model.name, bool(ws.backbone.spec.pretrained))
        if recent and (project is not None or Path(recent).suffix):
            self.add_recent(recent)
        self.tabs.setCurrentWidget(self.tree_panel)

    def open_project(self, path: str | Path) -> None:
        from workbench.project import load_project

        path = Path(path)
        try:
            plan = load_project(path)
        except WorkbenchError as exc:
            show_error(self, "Could not open the project", str(exc))
            return

        def load() -> Any:
            from workbench.workspace import Workspace

            return Workspace.from_plan(plan, path)

        self.run_background(load, f"Opening {path.name}", lambda ws: self._show_workspace(ws, path, str(path)),
                            "Could not open the project")

    def open_demo(self) -> None:
        if self.train_panel.is_running() or not self.confirm_discard():
            return

        def load() -> Any:
            from workbench.demo import demo_plan
            from workbench.workspace import Workspace

            return Workspace.from_plan(demo_plan())

        self.run_background(load, "Loading the demo", lambda ws: self._show_workspace(ws, None, None),
                            "Could not load the demo")

    def open_path(self, path: str) -> None:
        """A dropped, recent or command-line file: a project, an ONNX model or a checkpoint."""
        from workbench.plugins import registry

        suffix = Path(path).suffix.lower()
        sources = registry().suffix_map()  # each model-source plugin declares its file suffixes
        if suffix == ".toml":
            if not self.train_panel.is_running() and self.confirm_discard():
                self.open_project(path)
        elif sources.get(suffix) == "checkpoint":
            self.load_model(self.model_panel.checkpoint_request(path))
        elif suffix in sources:
            self.load_model(LoadRequest(path, source=sources[suffix]))
        else:
            show_error(self, "Cannot open this file",
                       f"{Path(path).name}: expected a project (.toml) or a model file ({', '.join(sorted(sources))})")

    def choose_project(self) -> None:
        if self.train_panel.is_running() or not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", PROJECT_FILTER)
        if path:
            self.open_project(path)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", "",
                                              "Models (*.onnx *.safetensors *.pth *.pt *.bin *.ckpt)")
        if path:
            self.open_path(path)

    def new_project(self) -> None:
        if self.train_panel.is_running() or not self.confirm_discard():
            return
        self.session.set_workspace(None)

    # -- saving ---------------------------------------------------------------------------
    def save(self) -> bool:
        if self.session.project_path is None:
            return self.save_as()
        return self.save_to(self.session.project_path)

    def save_as(self) -> bool:
        start = str(self.session.project_path or Path.home() / "project.toml")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
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
            show_error(self, "Could not save the project", str(exc))
            return False
        self.session.set_project_path(path)
        self.session.set_dirty(False)
        self.add_recent(path)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    # -- training ---------------------------------------------------------------------------
    def start_training(self, resume: bool = False) -> None:
        ws = self.session.workspace
        if ws is None or self.train_panel.is_running():
            return
        wrong = self.train_panel.wrong_settings()
        if wrong and not resume:
            show_error(self, "A setting was not stored", "Fix the value marked in red on the Training tab first:\n"
                       + "\n".join(wrong))
            self.tabs.setCurrentWidget(self.train_panel)
            return
        scan: DataScan | None = self.data_panel.scan
        if scan is None:
            show_error(self, "No training data", "Choose the training images on the Data tab first "
                       f"({self.data_panel.status.text()}).")
            self.tabs.setCurrentWidget(self.data_panel)
            return
        classes = len(scan.classes)
        if ws.backbone.spec.num_classes != classes and not resume:
            question = (f"The model's head has {ws.backbone.spec.num_classes} outputs but the data has {classes} "
                        f"classes. Rebuild the model with a new {classes}-class head? (The layers you froze stay "
                        "frozen; the new head starts from random weights.)")
            if ask_yes_no(self, "Replace the classifier head?", question):
                self._rebuild_head_then_train(classes)
            return
        errors = [f"• {p}" for p in self.session.problems if p.is_error and p.code != "class-count-mismatch"]
        if errors and not resume and not ask_yes_no(self, "The plan has errors", "\n".join(errors) + "\n\nStart anyway?"):
            return
        run_dir = self.train_panel.resumable_run if resume else self._new_run_dir()

        def prepare() -> Any:
            from workbench.training.prepare import build_trainer

            return build_trainer(ws, run_dir, resume=resume)

        self.tabs.setCurrentWidget(self.train_panel)
        self.train_panel.start(prepare, run_dir, resume)

    def _new_run_dir(self) -> Path:
        """runs/<time> beside the project file, or in this window's runs folder: where the Runs tab looks."""
        from workbench.training.run_folder import RunDir

        if self.session.project_path is not None:
            return RunDir.timestamped(Path(self.session.project_path).resolve().parent / "runs").path
        root = self.runs_root or Path(QStandardPaths.writableLocation(
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

        self.run_background(load, f"Rebuilding the model with a {classes}-class head", done,
                            "Could not rebuild the model")

    def _training_changed(self, running: bool) -> None:
        self.tree_panel.set_locked(running)
        self.undo_redo.update()
        for widget in (self.groups_panel, self.data_panel, self.model_panel):
            widget.setEnabled(not running)
        for action in (self.new_action, self.open_action, self.open_model_action, self.demo_action,
                       self.export_action, self.recent_menu.menuAction()):
            action.setEnabled(not running)
        if not running and self._close_after_stop:
            self._close_after_stop = False
            QTimer.singleShot(0, self.close)

    # -- runs -------------------------------------------------------------------------------
    def _run_roots(self) -> list[Path]:
        """Where this window looks for runs: beside the project file, and its own runs folder."""
        roots = []
        if self.session.project_path is not None:
            roots.append(Path(self.session.project_path))
        if self.runs_root is not None and Path(self.runs_root).is_dir():
            roots.append(Path(self.runs_root))
        return roots

    def _run_finished(self, state: str) -> None:
        """A finished or stopped run's trained model becomes the workspace's (the Trainer trained a copy).

        A failed run leaves the workspace's model as it was before the run.
        """
        run_dir = self.train_panel.run_dir
        trained, self.train_panel.trained = self.train_panel.trained, None
        ws = self.session.workspace
        if run_dir is not None and trained is not None and ws is not None and state in ("finished", "stopped"):
            from workbench.run_catalog import read_run

            ws.adopt(trained)
            self.session.model_replaced()  # trained BatchNorm statistics: the plan's warnings change
            info = read_run(run_dir)
            info.status = state  # what the run reported, whatever its files say a moment before it exits
            self.session.set_weights_label(info.weights_label())
        from workbench.training.run_folder import RunDir

        if run_dir is not None and state in ("finished", "stopped") and RunDir(run_dir).spec.is_file():
            self.results_panel.show_run(run_dir)  # the validation results, evaluated in the background
        if run_dir is not None and run_dir.parent not in [r.resolve() for r in self._run_roots()]:
            try:
                self.runs_panel.add_run_folder(run_dir)
            except WorkbenchError:
                pass  # the run never wrote its files (it failed before its first checkpoint)
        self.runs_panel.refresh()

    def open_run(self, run_dir: Path, then_continue: bool = False) -> None:
        """Load a run's weights, recipe, freeze state and labels into the workspace; show its curves."""
        if self.train_panel.is_running() or not self.confirm_discard():
            return
        project = self.session.project_path

        def load() -> Any:
            from workbench.run_catalog import read_run
            from workbench.runs import load_run_workspace, plan_for_project

            ws, recipe = load_run_workspace(run_dir)
            ws.plan = plan_for_project(ws.plan, project)  # a new run lands in the project's runs, not in this one
            # The plan says what the project says (the Runs tab compares it with each recipe); a rebuild
            # starts from the run's weights anyway (WorkbenchSession.start_weights).
            ws.plan.model.pretrained = bool(tomllib.loads(recipe).get("model", {}).get("pretrained", False))
            return ws, read_run(run_dir)

        def done(result: Any) -> None:
            ws, info = result
            self.session.set_workspace(ws, project, weights_label=info.weights_label())
            self.train_panel.show_run(run_dir, info.resumable)
            self.results_panel.show_run(run_dir)
            self.statusBar().showMessage(f"Opened {info.weights_label()}", 8000)
            if then_continue:
                self._after_data_scan(lambda: self.start_training(resume=True))
            else:
                self.tabs.setCurrentWidget(self.train_panel)

        self.run_background(load, f"Opening run {run_dir.name}", done, "Could not open the run")

    def _after_data_scan(self, action: Callable[[], None]) -> None:
        if not self.data_panel.is_scanning():
            action()
            return

        def once(*_: Any) -> None:
            self.data_panel.scanned.disconnect(once)
            action()

        self.data_panel.scanned.connect(once)

    def export_run(self, run_dir: Path) -> Any:
        """The export dialog for a run's weights (the workspace is not changed)."""
        from workbench.run_catalog import read_run
        from workbench.runs import load_run
        from workbench_ui.export_dialog import ExportDialog

        try:
            trained = load_run(run_dir)
        except WorkbenchError as exc:
            show_error(self, "Cannot export this run", str(exc))
            return None
        self.export_dialog = ExportDialog(trained.module, trained.spec, trained.recipe_toml, run_dir, self,
                                          weights_label=read_run(run_dir).weights_label(), plan=trained.plan)
        self.export_dialog.open()
        return self.export_dialog

    # -- export ---------------------------------------------------------------------------
    def open_export(self) -> Any:
        from workbench_ui.export_dialog import ExportDialog

        ws = self.session.workspace
        if ws is None:
            show_error(self, "Nothing to export", "Load a model first.")
            return None
        import tomli_w

        from workbench.project import plan_to_dict

        recipe = tomli_w.dumps(plan_to_dict(ws.plan))
        default_dir = self.train_panel.run_dir or self.session.plan.base_dir or Path.home()
        warning = ""
        runs = self.runs_panel.runs_with_weights()
        if self.session.untrained and runs:
            warning = (f"The model holds its initial weights — not trained — although this project has "
                       f"{len(runs)} run(s) with trained weights (latest: {runs[-1].name}). Export the untrained "
                       "weights anyway?\n\nTo export a run, select it on the Runs panel and press Export.")
        self.export_dialog = ExportDialog(ws.backbone.module, ws.backbone.spec, recipe, Path(default_dir), self,
                                          weights_label=self.session.weights_label, untrained_warning=warning,
                                          plan=ws.plan)
        self.export_dialog.open()
        return self.export_dialog

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
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls:
            event.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.train_panel.is_running():
            event.ignore()
            if self._close_after_stop:
                return
            if ask_yes_no(self, "Training is running",
                          "Stop training and close? The run stops after the current batch and keeps a checkpoint "
                          "you can continue from."):
                self._close_after_stop = True
                self.statusBar().showMessage("Stopping training; the window closes when the checkpoint is written…")
                self.train_panel.stop()
            return
        if not self._closing and not self.confirm_discard():
            event.ignore()
            return
        self._closing = True
        # Loads and scans finish in seconds; a QThread destroyed while running would abort the process.
        for call in list(self.calls) + list(self.data_panel._calls):
            call.wait()
        if self.export_dialog is not None and self.export_dialog.is_busy():
            self.export_dialog.call.wait()
        self.train_panel.wait()
        self.results_panel.wait()
        self.look_panel.wait()
        if self.compare_panel.run is not None:  # stops within one batch; a running QThread must not be destroyed
            self.compare_panel.stop()
            self.compare_panel.wait()
        self._save_settings()
        event.accept()
