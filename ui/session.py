"""WorkbenchSession: the Workspace being edited, observable by Qt views.

Every edit goes through ``edit``: the core function changes the plan, the plan is
re-resolved, and an edit the core rejects (``WorkbenchError``) is rolled back, so the
views never show a plan that cannot be resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from workbench.errors import WorkbenchError
from workbench.plan import FinetunePlan

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

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workspace: Workspace | None = None
        self.resolution: Resolution | None = None
        self.project_path: Path | None = None
        self._dirty = False
        # Which weights the workspace's module holds, in words: what an export would write.
        self.weights_label = ""
        # Every plan edit is one undoable step (Ctrl+Z / Ctrl+Shift+Z); cleared when a model loads.
        self.undo_stack = QUndoStack(self)
        # The plan shown before any model is loaded (data and training settings can be edited then).
        self._loose_plan = FinetunePlan()
        # What the last data scan found, and the plan's problems before Start (workbench.preflight).
        self.data_facts: DataFacts | None = None
        self.problems: list[Problem] = []
        self.resolutionChanged.connect(self._refresh_problems)  # connected first: views read current problems

    @property
    def plan(self) -> FinetunePlan:
        return self.workspace.plan if self.workspace is not None else self._loose_plan

    @property
    def dirty(self) -> bool:
        return self._dirty

    def set_dirty(self, dirty: bool) -> None:
        if dirty != self._dirty:
            self._dirty = dirty
            self.dirtyChanged.emit(dirty)

    def set_workspace(self, workspace: Workspace | None, project_path: Path | None = None,
                      weights_label: str | None = None) -> None:
        """Show a newly loaded workspace. Raises WorkbenchError when its plan cannot be resolved."""
        from workbench.run_catalog import NOT_TRAINED

        resolution = workspace.resolve() if workspace is not None else None
        self.workspace = workspace
        self.undo_stack.clear()
        self.weights_label = weights_label or (f"{NOT_TRAINED} ({workspace.backbone.weights})" if workspace else "")
        self.weightsChanged.emit()
        self.resolution = resolution
        if workspace is None:
            self._loose_plan = FinetunePlan()
        self.project_path = project_path
        self.projectPathChanged.emit()
        self.workspaceChanged.emit()
        self.resolutionChanged.emit()
        self.set_dirty(False)

    def swap_workspace(self, workspace: Workspace, description: str, weights_label: str | None = None) -> None:
        """Replace the model by one rebuilt from the plan (a cut) as one undoable step: undo brings back
        the model, plan and weights label before it. Raises WorkbenchError (nothing changes) when its plan
        cannot be resolved."""
        workspace.resolve()
        assert self.workspace is not None
        self.undo_stack.push(_WorkspaceSwap(self, (self.workspace, self.weights_label),
                                            (workspace, weights_label or self.weights_label), description))

    def _show_workspace(self, workspace: Workspace, weights_label: str) -> None:
        self.workspace = workspace
        self.set_weights_label(weights_label)
        self.resolution = workspace.resolve()
        self.workspaceChanged.emit()
        self.planReplaced.emit()
        self.resolutionChanged.emit()
        self.set_dirty(True)

    def model_replaced(self) -> None:
        """The workspace's module was replaced (a run's trained model adopted): re-resolve, warnings included."""
        if self.workspace is not None:
            self.resolution = self.workspace.resolve()
            self.resolutionChanged.emit()

    def set_project_path(self, path: Path | None) -> None:
        self.project_path = path
        if self.workspace is not None:
            self.workspace.project_path = path
        self.projectPathChanged.emit()

    def edit(self, change: Callable[[FinetunePlan], Any], description: str = "Edit the plan") -> str | None:
        """Apply ``change(plan)`` as one undoable step; returns None, or the core's message when it
        rejects the edit (rolled back, nothing to undo)."""
        plan = self.plan
        before = plan.copy()
        reshaped = False
        try:
            change(plan)
            if self.workspace is not None:
                reshaped = self.workspace.sync_input_size()
                self.resolution = self.workspace.resolve()
        except WorkbenchError as exc:
            for f in fields(plan):
                setattr(plan, f.name, getattr(before, f.name))
            if self.workspace is not None:
                reshaped = self.workspace.sync_input_size()
                self.resolution = self.workspace.resolve()
            if reshaped:
                self.shapesChanged.emit()
            return str(exc)
        after = plan.copy()
        if _plan_state(after) != _plan_state(before):
            self.undo_stack.push(_PlanEdit(self, before, after, description))
        if reshaped:
            self.shapesChanged.emit()
        self.resolutionChanged.emit()
        self.set_dirty(True)
        return None

    def replace_plan(self, snapshot: FinetunePlan) -> None:
        """Put back a whole plan (undo/redo): every view re-reads it."""
        plan, fresh = self.plan, snapshot.copy()
        for f in fields(plan):
            setattr(plan, f.name, getattr(fresh, f.name))
        reshaped = False
        if self.workspace is not None:
            reshaped = self.workspace.sync_input_size()  # the snapshot's size ran before, so it runs again
            self.resolution = self.workspace.resolve()
        if reshaped:
            self.shapesChanged.emit()
        self.planReplaced.emit()
        self.resolutionChanged.emit()
        self.set_dirty(True)

    def set_frozen(self, path: str, frozen: bool) -> Resolution:
        """A tick on the tree; returns the new Resolution."""
        from workbench.freezing import set_frozen

        assert self.workspace is not None
        tree = self.workspace.tree
        description = f"{'Freeze' if frozen else 'Unfreeze'} {path or 'whole model'}"
        error = self.edit(lambda plan: set_frozen(plan, tree, path, frozen), description)
        if error is not None:
            raise WorkbenchError(error)
        assert self.resolution is not None
        return self.resolution

    def set_data_facts(self, facts: DataFacts | None) -> None:
        """What a data scan found (classes, training images); None when there is no usable data."""
        if facts != self.data_facts:
            self.data_facts = facts
            self._refresh_problems()

    def _refresh_problems(self) -> None:
        from workbench.preflight import preflight

        ws, res = self.workspace, self.resolution
        problems = [] if ws is None or res is None else preflight(
            ws.tree, ws.plan, res, ws.backbone.spec.num_classes, self.data_facts)
        if problems != self.problems:
            self.problems = problems
            self.problemsChanged.emit()

    def set_weights_label(self, label: str) -> None:
        self.weights_label = label
        self.weightsChanged.emit()

    def start_weights(self) -> dict[str, Any] | None:
        """The model's weights for a rebuild from the plan (compare, cut, new head) to start from; None while
        the model holds the plan's own initial weights (a rebuild gives the same ones).

        Not copied (a big model's clone would stall the window): a rebuild copies them into its own
        tensors (``Workspace.take_weights``), and nothing changes these in place — a finished run's
        model replaces the module instead.
        """
        if self.workspace is None or self.untrained:
            return None
        return {name: t.detach() for name, t in self.workspace.backbone.module.state_dict().items()}

    @property
    def untrained(self) -> bool:
        from workbench.run_catalog import NOT_TRAINED

        return self.weights_label.startswith(NOT_TRAINED)


def without_pretrained(plan: FinetunePlan) -> FinetunePlan:
    """A copy of ``plan`` to build the model from when ``start_weights`` replace every weight (nothing downloaded)."""
    build = plan.copy()
    build.model.pretrained = False
    return build


def _plan_state(plan: FinetunePlan) -> str:
    from workbench.project import plan_to_dict

    return repr(plan_to_dict(plan))


class _PlanEdit(QUndoCommand):
    """One plan edit: the plan before and after it."""

    def __init__(self, session: WorkbenchSession, before: FinetunePlan, after: FinetunePlan, text: str) -> None:
        super().__init__(text)
        self._session, self._before, self._after = session, before, after
        self._applied = True  # push() calls redo(); the edit has already been made

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self._session.replace_plan(self._after)

    def undo(self) -> None:
        self._session.replace_plan(self._before)


class _WorkspaceSwap(QUndoCommand):
    """A rebuilt model (a cut) in place of the one before; each keeps its own plan."""

    def __init__(self, session: WorkbenchSession, before: tuple[Workspace, str], after: tuple[Workspace, str],
                 text: str) -> None:
        super().__init__(text)
        self._session, self._before, self._after = session, before, after

    def redo(self) -> None:
        self._session._show_workspace(*self._after)

    def undo(self) -> None:
        self._session._show_workspace(*self._before)
