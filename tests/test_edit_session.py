"""The editing session without Qt: edits, undo/redo, rollback of a refused edit, problems, observers."""

from __future__ import annotations

import pytest

from workbench.backbone import LoadRequest
from workbench.edit_session import EditSession
from workbench.errors import WorkbenchError
from workbench.plan import FinetunePlan, ModelConfig, UnfreezeStep
from workbench.preflight import DataFacts
from workbench.sources import load_backbone
from workbench.workspace import Workspace

SIZE = (3, 32, 32)


def workspace(num_classes: int = 4) -> Workspace:
    backbone = load_backbone(LoadRequest("resnet18", num_classes=num_classes, input_size=SIZE))
    return Workspace.from_backbone(backbone, FinetunePlan(model=ModelConfig(source="timm", name="resnet18",
                                                                            num_classes=num_classes,
                                                                            input_size=SIZE)))


class Recorder:
    """Every event of a session, in the order emitted, with its arguments."""

    def __init__(self, session: EditSession) -> None:
        self.seen: list[tuple] = []
        for name in ("workspace_changed", "resolution_changed", "dirty_changed", "project_path_changed",
                     "weights_changed", "plan_replaced", "shapes_changed", "problems_changed"):
            getattr(session.events, name).connect(lambda *args, name=name: self.seen.append((name, *args)))

    def names(self) -> list[str]:
        names, self.seen = [s[0] for s in self.seen], []
        return names


@pytest.fixture(scope="module")
def loaded_workspace() -> Workspace:
    return workspace()


@pytest.fixture
def session(loaded_workspace) -> EditSession:
    loaded_workspace.plan = FinetunePlan(model=loaded_workspace.plan.model)
    s = EditSession()
    s.set_workspace(loaded_workspace)
    return s


def test_edits_undo_and_redo_exactly_and_observers_hear_each(session):
    events = Recorder(session)
    plan = session.plan
    start, start_trainable = plan.copy(), session.resolution.trainable_params

    assert session.edit(lambda p: setattr(p.train, "lr", 3.3e-4), "Learning rate") is None
    after_lr = plan.copy()
    assert events.names() == ["resolution_changed", "dirty_changed"] and session.dirty
    session.set_frozen("layer1", True)
    after_freeze = plan.copy()
    assert session.resolution.trainable_params < start_trainable
    assert (session.history.undo_text, session.history.count()) == ("Freeze layer1", 2)
    events.names()

    session.undo()
    assert session.plan is plan and plan == after_lr  # the object every view holds, put back field by field
    assert session.resolution.trainable_params == start_trainable
    names = events.names()
    assert names[0] == "plan_replaced" and names[-1] == "resolution_changed"
    assert "dirty_changed" not in names  # already dirty
    session.undo()
    assert plan == start and plan.train.lr == start.train.lr
    assert not session.history.can_undo and session.history.redo_text == "Learning rate"
    events.names()
    session.undo()  # nothing left: nothing happens
    assert events.names() == []

    session.redo()
    session.redo()
    assert plan == after_freeze and plan.train.lr == 3.3e-4 and not session.history.can_redo
    session.undo()
    assert session.edit(lambda p: setattr(p.train, "epochs", 7), "Epochs") is None  # a new step drops the redo
    assert not session.history.can_redo and session.history.count() == 2


def test_a_refused_edit_leaves_the_plan_and_the_history_unchanged(session):
    session.set_frozen("layer2", True)
    before, count, resolution = session.plan.copy(), session.history.count(), session.resolution
    events = Recorder(session)

    def half_done(plan: FinetunePlan) -> None:
        plan.train.epochs = 99  # a change made before the refusal is rolled back too
        plan.unfreeze.append(UnfreezeStep(1, ["no-such-group"]))

    error = session.edit(half_done, "Bad schedule")
    assert error is not None and "no-such-group" in error
    assert session.plan == before and session.plan.train.epochs == before.train.epochs
    assert session.history.count() == count and session.history.undo_text == "Freeze layer2"
    assert session.resolution.trainable_params == resolution.trainable_params
    assert events.names() == []  # no observer saw a plan that cannot be resolved

    with pytest.raises(WorkbenchError):
        session.set_frozen("no.such.layer", True)
    assert session.plan == before and session.history.count() == count


def test_the_problems_list_follows_edits_and_data_scans(session):
    events = Recorder(session)
    session.set_data_facts(DataFacts(classes=7, train_images=100))
    assert "class-count-mismatch" in [p.code for p in session.problems]
    assert events.names() == ["problems_changed"]
    session.set_data_facts(DataFacts(classes=7, train_images=100))  # the same facts: nothing new to say
    assert events.names() == []

    session.set_frozen("", True)  # the whole model frozen: nothing trains
    assert "nothing-trainable" in [p.code for p in session.problems]
    names = events.names()
    assert names.index("problems_changed") < names.index("resolution_changed")  # observers read current problems
    session.undo()
    assert "nothing-trainable" not in [p.code for p in session.problems]
    session.set_data_facts(DataFacts(classes=4, train_images=100))
    assert "class-count-mismatch" not in [p.code for p in session.problems]


def test_a_swapped_model_undoes_and_loading_a_model_clears_the_history(session, loaded_workspace):
    session.set_weights_label("run 1 (trained)")
    other = workspace(num_classes=3)
    session.swap_workspace(other, "Cut here", "run 1; cut")
    assert (session.workspace, session.weights_label, session.history.undo_text) == (other, "run 1; cut", "Cut here")
    session.undo()
    assert session.workspace is loaded_workspace and session.weights_label == "run 1 (trained)"
    session.redo()
    assert session.workspace is other

    events = Recorder(session)
    session.set_workspace(loaded_workspace)
    assert session.history.count() == 0 and not session.dirty and session.untrained
    assert events.names()[-1] == "dirty_changed" and events.seen == []
    session.set_workspace(None)
    assert session.workspace is None and session.problems == [] and session.plan == FinetunePlan()
    assert session.edit(lambda p: setattr(p.train, "epochs", 3)) is None  # settings are editable before a model
    assert session.plan.train.epochs == 3 and session.start_weights() is None
