"""Undo/redo by the keyboard puts back the exact earlier plan (LRs in scientific notation too); entries are named."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.ui.test_typed_values import show_panel, type_into_box, type_into_cell
from workbench_ui.qt_layer_tree import NAME

CHECK = Qt.ItemDataRole.CheckStateRole


@pytest.fixture
def loaded(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    window.activateWindow()
    qtbot.waitExposed(window)
    return window


def check_state(window, path: str) -> Qt.CheckState:
    model = window.tree_panel.model
    return model.data(model.index_of_path(path, NAME), CHECK)


def press(qtbot, window, key: Qt.Key, modifiers: Qt.KeyboardModifier) -> None:
    """A key chord as the user types it; the window's shortcut handles it."""
    window.activateWindow()
    qtbot.keyClick(window.tree_panel.view, key, modifiers)


CTRL = Qt.KeyboardModifier.ControlModifier
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


def test_every_kind_of_edit_undoes_and_redoes_exactly(loaded, qtbot, dialogs):
    session, panel, groups = loaded.session, loaded.tree_panel, loaded.groups_panel
    snapshots = [session.plan.copy()]

    qtbot.mouseClick(panel.linear_probe, Qt.MouseButton.LeftButton)  # preset
    snapshots.append(session.plan.copy())
    assert loaded.undo_action.text().replace("&", "") == "Undo Linear probe"
    panel.batchnorm.setCurrentIndex(panel.batchnorm.findData("train"))  # BN policy
    snapshots.append(session.plan.copy())
    model = panel.model
    assert model.setData(model.index_of_path("layer4", NAME), Qt.CheckState.Checked.value, CHECK)  # a tick
    snapshots.append(session.plan.copy())
    type_into_cell(qtbot, groups, "head", groups.groups_model.LR, "6.56e-05")  # a group's LR
    assert session.plan.group("head").lr == 6.56e-05
    snapshots.append(session.plan.copy())
    show_panel(qtbot, groups)
    type_into_box(qtbot, groups.default_lr, "3.3e-4")  # the default LR
    snapshots.append(session.plan.copy())
    assert len({repr(s) for s in snapshots}) == len(snapshots)  # each step really changed the plan
    paths = [n.path for n in session.workspace.tree.nodes]
    boxes_at_end = [check_state(loaded, p) for p in paths]

    for expected in reversed(snapshots[:-1]):
        press(qtbot, loaded, Qt.Key.Key_Z, CTRL)
        assert session.plan == expected
    assert not loaded.undo_action.isEnabled()
    assert check_state(loaded, "layer4") == Qt.CheckState.Checked  # nothing frozen at the start
    assert session.plan.freeze.batchnorm == panel.batchnorm.currentData()

    for expected in snapshots[1:]:
        press(qtbot, loaded, Qt.Key.Key_Z, CTRL_SHIFT)
        assert session.plan == expected
    assert session.plan.group("head").lr == 6.56e-05 and session.plan.train.lr == 3.3e-4  # exact, not rounded
    assert groups.default_lr.lineEdit().text() == "0.00033"
    assert panel.batchnorm.currentData() == "train"
    assert [check_state(loaded, p) for p in paths] == boxes_at_end
    assert session.dirty
    assert dialogs.calls == []


def test_undo_of_a_tick_updates_the_tree_and_names_the_edit(loaded, qtbot):
    model = loaded.tree_panel.model
    assert model.setData(model.index_of_path("fc", NAME), Qt.CheckState.Unchecked.value, CHECK)
    assert loaded.session.plan.freeze.frozen == ["fc"]
    assert loaded.undo_action.text().replace("&", "") == "Undo Freeze fc"
    loaded.undo_action.trigger()  # the Edit menu's item
    assert loaded.session.plan.freeze.frozen == []
    assert check_state(loaded, "fc") == Qt.CheckState.Checked
    assert loaded.redo_action.text().replace("&", "") == "Redo Freeze fc"
    edit_menu = next(a.menu() for a in loaded.menuBar().actions() if a.text() == "&Edit")
    assert loaded.undo_action in edit_menu.actions() and loaded.redo_action in edit_menu.actions()


def test_a_rejected_edit_and_a_new_model_leave_nothing_to_undo(loaded, resnet18_backbone, qtbot, dialogs):
    from workbench.plan import FinetunePlan, ModelConfig
    from workbench.workspace import Workspace

    groups = loaded.groups_panel
    show_panel(qtbot, groups)
    type_into_box(qtbot, groups.default_lr, "0")  # refused with a message: no history entry
    assert dialogs.messages("critical") and not loaded.undo_action.isEnabled()
    model = loaded.tree_panel.model
    assert model.setData(model.index_of_path("fc", NAME), Qt.CheckState.Unchecked.value, CHECK)
    assert loaded.undo_action.isEnabled()
    plan = FinetunePlan(model=ModelConfig(source="timm", name="resnet18", input_size=(3, 64, 64)))
    loaded.session.set_workspace(Workspace.from_backbone(resnet18_backbone, plan))
    assert not loaded.undo_action.isEnabled()  # undo never reaches into another model's plan
    press(qtbot, loaded, Qt.Key.Key_Z, CTRL)
    assert loaded.session.plan.freeze.frozen == []
