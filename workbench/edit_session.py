"""EditSession: the Workspace being edited, with undo, rollback and the plan's problems — Qt-free and observable.

Every edit goes through ``edit``: the change is applied to the plan, the plan is re-resolved, and an edit the
core rejects (``WorkbenchError``) is rolled back, so an observer never sees a plan that cannot be resolved.
Observers connect to ``session.events.<name>`` (plain callbacks, as napari's evented models); the window's
adapter (``workbench_ui.session``) only turns these into Qt signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.events import Event
from workbench.plan import FinetunePlan
from workbench.undo_history import UndoHistory, UndoStep

if TYPE_CHECKING:
    from workbench.preflight import DataFacts, Problem
    from workbench.resolve import Resolution
    from workbench.workspace import Workspace


def _event(name: str) -> Any:
    return field(default_factory=lambda: Event(name))


@dataclass(frozen=True)
class SessionEvents:
    workspace_changed: Event = _event("workspace_changed")  # a model was loaded (new tree) or closed
    resolution_changed: Event = _event("resolution_changed")  # the plan changed; ``resolution`` is current
    dirty_changed: Event = _event("dirty_changed")  # called with the new ``dirty``
    project_path_changed: Event = _event("project_path_changed")
    weights_changed: Event = _event("weights_changed")  # ``weights_label`` changed (trained, a run opened)
    plan_replaced: Event = _event("plan_replaced")  # undo/redo put back a whole plan: re-read every setting
    shapes_changed: Event = _event("shapes_changed")  # the input size changed: output shapes and spec are new
    problems_changed: Event = _event("problems_changed")  # ``problems`` is current (a plan edit or a data scan)


class EditSession:
    def __init__(self) -> None:
        self.events = SessionEvents()
        self.workspace: Workspace | None = None
        self.resolution: Resolution | None = None
        self.project_path: Path | None = None
        self._dirty = False
        # Which weights the workspace's module holds, in words: what an export would write.
        self.weights_label = ""
        # Every plan edit is one undoable step; cleared when a model loads (undo never reaches another model).
        self.history = UndoHistory()
        # The plan shown before any model is loaded (data and training settings can be edited then).
        self._loose_plan = FinetunePlan()
        # What the last data scan found, and the plan's problems before Start (workbench.preflight).
        self.data_facts: DataFacts | None = None
        self.problems: list[Problem] = []

    @property
    def plan(self) -> FinetunePlan:
        return self.workspace.plan if self.workspace is not None else self._loose_plan

    @property
    def dirty(self) -> bool:
        return self._dirty

    def set_dirty(self, dirty: bool) -> None:
        if dirty != self._dirty:
            self._dirty = dirty
            self.events.dirty_changed.emit(dirty)

    def set_workspace(self, workspace: Workspace | None, project_path: Path | None = None,
                      weights_label: str | None = None) -> None:
        """Show a newly loaded workspace. Raises WorkbenchError (nothing changes) when its plan cannot be resolved."""
        from workbench.run_catalog import NOT_TRAINED

        resolution = workspace.resolve() if workspace is not None else None
        self.workspace = workspace
        self.history.clear()
        self.weights_label = weights_label or (f"{NOT_TRAINED} ({workspace.backbone.weights})" if workspace else "")
        self.events.weights_changed.emit()
        self.resolution = resolution
        if workspace is None:
            self._loose_plan = FinetunePlan()
        self.project_path = project_path
        self.events.project_path_changed.emit()
        self.events.workspace_changed.emit()
        self._resolution_changed()
        self.set_dirty(False)

    def swap_workspace(self, workspace: Workspace, description: str, weights_label: str | None = None) -> None:
        """Replace the model by one rebuilt from the plan (a cut) as one undoable step: undo brings back the
        model, plan and weights label before it. Raises WorkbenchError (nothing changes) when its plan cannot
        be resolved."""
        workspace.resolve()
        if self.workspace is None:
            raise WorkbenchError("load a model first: there is no model to replace")
        before = (self.workspace, self.weights_label)
        after = (workspace, weights_label or self.weights_label)
        self._show_workspace(*after)
        self.history.push(UndoStep(description, lambda: self._show_workspace(*before),
                                   lambda: self._show_workspace(*after)))

    def _show_workspace(self, workspace: Workspace, weights_label: str) -> None:
        self.workspace = workspace
        self.set_weights_label(weights_label)
        self.resolution = workspace.resolve()
        self.events.workspace_changed.emit()
        self.events.plan_replaced.emit()
        self._resolution_changed()
        self.set_dirty(True)

    def model_replaced(self) -> None:
        """The workspace's module was replaced (a run's trained model adopted): re-resolve, warnings included."""
        if self.workspace is not None:
            self.resolution = self.workspace.resolve()
            self._resolution_changed()

    def set_project_path(self, path: Path | None) -> None:
        self.project_path = path
        if self.workspace is not None:
            self.workspace.project_path = path
        self.events.project_path_changed.emit()

    def edit(self, change: Callable[[FinetunePlan], Any], description: str = "Edit the plan") -> str | None:
        """Apply ``change(plan)`` as one undoable step; returns None, or the core's message when it
        rejects the edit (rolled back: the plan is as before, nothing to undo)."""
        plan = self.plan
        before = plan.copy()
        reshaped = False
        try:
            change(plan)
            if self.workspace is not None:
                reshaped = self.workspace.sync_input_size()
                self.resolution = self.workspace.resolve()
        except WorkbenchError as exc:
            _put_back(plan, before)
            if self.workspace is not None:
                reshaped = self.workspace.sync_input_size()
                self.resolution = self.workspace.resolve()
            if reshaped:
                self.events.shapes_changed.emit()
            return str(exc)
        after = plan.copy()
        if _plan_state(after) != _plan_state(before):
            self.history.push(UndoStep(description, lambda: self.replace_plan(before),
                                       lambda: self.replace_plan(after)))
        if reshaped:
            self.events.shapes_changed.emit()
        self._resolution_changed()
        self.set_dirty(True)
        return None

    def replace_plan(self, snapshot: FinetunePlan) -> None:
        """Put back a whole plan (undo/redo): every observer re-reads it."""
        _put_back(self.plan, snapshot.copy())
        reshaped = False
        if self.workspace is not None:
            reshaped = self.workspace.sync_input_size()  # the snapshot's size ran before, so it runs again
            self.resolution = self.workspace.resolve()
        if reshaped:
            self.events.shapes_changed.emit()
        self.events.plan_replaced.emit()
        self._resolution_changed()
        self.set_dirty(True)

    def undo(self) -> None:
        self.history.undo()

    def redo(self) -> None:
        self.history.redo()

    def set_frozen(self, path: str, frozen: bool) -> Resolution:
        """A tick on the tree; returns the new Resolution. Raises WorkbenchError (nothing changes) when refused."""
        from workbench.freezing import set_frozen

        if self.workspace is None:
            raise WorkbenchError("load a model first: there are no layers to freeze")
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

    def _resolution_changed(self) -> None:
        self._refresh_problems()  # first: observers of the resolution read current problems
        self.events.resolution_changed.emit()

    def _refresh_problems(self) -> None:
        from workbench.preflight import preflight

        ws, res = self.workspace, self.resolution
        problems = [] if ws is None or res is None else preflight(
            ws.tree, ws.plan, res, ws.backbone.spec.num_classes, self.data_facts)
        if problems != self.problems:
            self.problems = problems
            self.events.problems_changed.emit()

    def set_weights_label(self, label: str) -> None:
        self.weights_label = label
        self.events.weights_changed.emit()

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


def _put_back(plan: FinetunePlan, snapshot: FinetunePlan) -> None:
    """Make ``plan`` (the object every view holds) equal to ``snapshot``, field by field."""
    for f in fields(plan):
        setattr(plan, f.name, getattr(snapshot, f.name))


def _plan_state(plan: FinetunePlan) -> str:
    from workbench.project import plan_to_dict

    return repr(plan_to_dict(plan))
