"""WorkbenchSession: the core's EditSession seen from Qt — its events re-emitted as signals.

Undo, rollback of a refused edit and the problems list live in ``workbench.edit_session``; this adapter holds
no state of its own beyond the session it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from workbench.edit_session import EditSession
from workbench.plan import FinetunePlan
from workbench_ui.undo_actions import QtUndoHistory

if TYPE_CHECKING:
    from workbench.preflight import DataFacts
    from workbench.problems import Problem
    from workbench.resolve import Resolution
    from workbench.workspace import Workspace



class WorkbenchSession(QObject):
    workspaceChanged = Signal()  # a model was loaded (new tree) or closed
    resolutionChanged = Signal()  # the plan changed; ``resolution`` is current
    dirtyChanged = Signal(bool)
    projectPathChanged = Signal()
    weightsChanged = Signal()  # ``weights_label`` changed (trained, a run opened)
    planReplaced = Signal()  # undo/redo put back a whole plan: views re-read every setting
    shapesChanged = Signal()  # the input size changed: the tree's output shapes and the spec are new
    problemsChanged = Signal()  # ``problems`` is current (after a plan edit or a data scan)

    def __init__(self, parent: QObject | None = None, core: EditSession | None = None) -> None:
        super().__init__(parent)
        self.core = core or EditSession()
        events = self.core.events
        # Each core event becomes the signal of the same meaning (emitted synchronously, in the core's order).
        events.workspace_changed.connect(self.workspaceChanged.emit)
        events.resolution_changed.connect(self.resolutionChanged.emit)
        events.dirty_changed.connect(self.dirtyChanged.emit)
        events.project_path_changed.connect(self.projectPathChanged.emit)
        events.weights_changed.connect(self.weightsChanged.emit)
        events.plan_replaced.connect(self.planReplaced.emit)
        events.shapes_changed.connect(self.shapesChanged.emit)
        events.problems_changed.connect(self.problemsChanged.emit)
        self.undo_stack = QtUndoHistory(self.core.history, self)

    # -- state, read from the core ------------------------------------------------------------
    @property
    def workspace(self) -> Workspace | None:
        return self.core.workspace

    @property
    def resolution(self) -> Resolution | None:
        return self.core.resolution

    @property
    def project_path(self) -> Path | None:
        return self.core.project_path

    @property
    def plan(self) -> FinetunePlan:
        return self.core.plan

    @property
    def dirty(self) -> bool:
        return self.core.dirty

    @property
    def weights_label(self) -> str:
        return self.core.weights_label

    @property
    def untrained(self) -> bool:
        return self.core.untrained

    @property
    def data_facts(self) -> DataFacts | None:
        return self.core.data_facts

    @property
    def problems(self) -> list[Problem]:
        return self.core.problems

    # -- changes, made by the core --------------------------------------------------------------
    def set_dirty(self, dirty: bool) -> None:
        self.core.set_dirty(dirty)

    def set_workspace(self, workspace: Workspace | None, project_path: Path | None = None,
                      weights_label: str | None = None) -> None:
        self.core.set_workspace(workspace, project_path, weights_label)

    def swap_workspace(self, workspace: Workspace, description: str, weights_label: str | None = None) -> None:
        self.core.swap_workspace(workspace, description, weights_label)

    def model_replaced(self) -> None:
        self.core.model_replaced()

    def set_project_path(self, path: Path | None) -> None:
        self.core.set_project_path(path)

    def edit(self, change: Callable[[FinetunePlan], Any], description: str = "Edit the plan") -> str | None:
        return self.core.edit(change, description)

    def replace_plan(self, snapshot: FinetunePlan) -> None:
        self.core.replace_plan(snapshot)

    def set_frozen(self, path: str, frozen: bool) -> Resolution:
        return self.core.set_frozen(path, frozen)

    def set_data_facts(self, facts: DataFacts | None) -> None:
        self.core.set_data_facts(facts)

    def set_weights_label(self, label: str) -> None:
        self.core.set_weights_label(label)

    def start_weights(self) -> dict[str, Any] | None:
        return self.core.start_weights()
