"""Undo/redo of plan edits, driven through the real widgets and the Edit menu's actions."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.ui.test_typed_values import type_into_cell


@pytest.fixture
def loaded(window, resnet18_workspace):
    window.session.set_workspace(resnet18_workspace)
    return window


def test_every_plan_edit_undoes_and_redoes(loaded, qtbot):
    session, panel = loaded.session, loaded.tree_panel
    plan = session.plan
    start = (list(plan.freeze.frozen), plan.freeze.batchnorm, session.resolution.trainable_params)
    qtbot.mouseClick(panel.linear_probe, Qt.MouseButton.LeftButton)  # a preset
    probed = session.resolution.trainable_params
    assert probed < start[2]
    panel.batchnorm.setCurrentIndex(panel.batchnorm.findData("train"))  # the BatchNorm policy
    assert plan.freeze.batchnorm == "train"
    type_into_cell(qtbot, loaded.groups_panel, "head", loaded.groups_panel.groups_model.LR, "2.5e-4")  # an LR
    assert plan.group("head").lr == 2.5e-4
    undo, redo = loaded.undo_action, loaded.redo_action
    assert undo.isEnabled() and not redo.isEnabled()

    undo.trigger()
    assert plan.group("head") is None or plan.group("head").lr != 2.5e-4
    undo.trigger()
    assert plan.freeze.batchnorm == "freeze"
    assert panel.batchnorm.currentData() == "freeze"  # the combo shows the plan
    undo.trigger()
    assert (list(plan.freeze.frozen), plan.freeze.batchnorm, session.resolution.trainable_params) == start
    assert loaded.summary_bar.summary.text() == session.resolution.summary()
    assert not undo.isEnabled()

    redo.trigger()
    assert session.resolution.trainable_params == probed
    redo.trigger()
    redo.trigger()
    assert plan.freeze.batchnorm == "train" and plan.group("head").lr == 2.5e-4
    assert not redo.isEnabled()
    assert undo.shortcut().toString() == "Ctrl+Z" and "Ctrl+Shift+Z" in [s.toString() for s in redo.shortcuts()]


def test_a_rejected_edit_leaves_nothing_to_undo_and_loading_clears_history(loaded, window, resnet18_workspace):
    session = loaded.session
    from workbench.plan import UnfreezeStep

    count = session.undo_stack.count()
    error = session.edit(lambda plan: plan.unfreeze.append(UnfreezeStep(1, ["nope"])))
    assert error is not None and session.undo_stack.count() == count
    session.set_workspace(resnet18_workspace)
    assert session.undo_stack.count() == 0
