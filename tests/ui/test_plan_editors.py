"""The plan editors a project file allows, driven through the real widgets: type, press Enter, read the plan,
undo; bad input is refused with a message and leaves the plan as it was."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QLineEdit

from tests.ui.test_typed_values import show_panel, type_into_box
from workbench_ui.group_picker import GroupChecklist
from workbench_ui.qt_layer_tree import SHAPE


@pytest.fixture
def loaded(window, resnet18_workspace):
    window.session.set_workspace(resnet18_workspace)
    return window


def type_line(qtbot, edit: QLineEdit, text: str) -> None:
    qtbot.waitUntil(edit.isVisible)
    edit.setFocus()
    qtbot.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def snapshot(plan):
    from workbench.project import plan_to_dict

    return repr(plan_to_dict(plan))


# -- freeze / unfreeze by selector ------------------------------------------------------------
def test_selector_counts_live_and_applies_as_one_undoable_edit(loaded, qtbot, dialogs):
    bar, session = loaded.tree_panel.selector_bar, loaded.session
    plan, total = session.plan, session.resolution.total_params
    qtbot.waitUntil(bar.selector.isVisible)
    qtbot.keyClicks(bar.selector, "type:BatchNorm2")
    assert "matches no module" in bar.count.text() and "type:BatchNorm2d" in bar.count.text()  # a hint
    qtbot.keyClicks(bar.selector, "d")  # the count follows every key
    assert "matches 20 modules, 40 parameter tensors (9,600 parameters)" in bar.count.text()
    assert "freezes 9,600 parameters" in bar.count.text()
    assert plan.freeze.frozen == []  # counting edits nothing
    qtbot.keyClick(bar.selector, Qt.Key.Key_Return)
    assert plan.freeze.frozen == ["type:BatchNorm2d"]
    assert session.resolution.trainable_params == total - 9_600
    assert "nothing changes: already frozen" in bar.count.text()
    assert loaded.summary_bar.summary.text() == session.resolution.summary()

    loaded.undo_action.trigger()
    assert plan.freeze.frozen == [] and session.resolution.trainable_params == total
    loaded.redo_action.trigger()
    assert plan.freeze.frozen == ["type:BatchNorm2d"]
    assert dialogs.calls == []


def test_unfreeze_by_regex_inside_a_linear_probe(loaded, qtbot):
    panel, session = loaded.tree_panel, loaded.session
    qtbot.mouseClick(panel.linear_probe, Qt.MouseButton.LeftButton)
    probe = session.resolution.trainable_params
    bar = panel.selector_bar
    bar.mode.setCurrentIndex(bar.mode.findData(False))
    type_line(qtbot, bar.selector, r"re:^layer4\.1$")
    assert session.plan.freeze.unfrozen[-1] == r"re:^layer4\.1$"
    layer4_1 = session.workspace.tree.node("layer4.1").param_count
    assert session.resolution.trainable_params == probe + layer4_1
    loaded.undo_action.trigger()
    assert session.resolution.trainable_params == probe


@pytest.mark.parametrize("bad, says", [("re:[", "bad regular expression"), ("layer9", "unknown module path"),
                                       ("type:Batchnorm2d", "type:BatchNorm2d"), ("re:^nothing$", "matches no")])
def test_a_bad_selector_is_refused_with_a_message(loaded, qtbot, dialogs, bad, says):
    bar, plan = loaded.tree_panel.selector_bar, loaded.session.plan
    before = snapshot(plan)
    count = loaded.session.undo_stack.count()
    type_line(qtbot, bar.selector, bad)
    assert says in bar.count.text()
    assert snapshot(plan) == before and loaded.session.undo_stack.count() == count
    assert dialogs.calls == []  # said inline under the box, no dialog on top of it


# -- input size -------------------------------------------------------------------------------
def test_non_square_input_size_updates_the_tree_shapes_and_undoes(loaded, qtbot, dialogs):
    data, session, tree_model = loaded.data_panel, loaded.session, loaded.tree_panel.model
    loaded.tabs.setCurrentWidget(data)
    assert data.input_size.text() == "3×64×64"
    layer4 = session.workspace.tree.node("layer4")
    assert tree_model.index_of_path("layer4", SHAPE).data() == "512 × 2 × 2"
    type_line(qtbot, data.input_size, "3x48x192")
    assert session.plan.model.input_size == (3, 48, 192)
    assert session.workspace.backbone.spec.input_size == (3, 48, 192)
    assert layer4.output_shape == (1, 512, 2, 6)
    assert tree_model.index_of_path("layer4", SHAPE).data() == "512 × 2 × 6"
    assert "input 3×48×192" in loaded.tree_panel.info.text()
    assert data.input_size.text() == "3×48×192"

    loaded.undo_action.trigger()
    assert session.plan.model.input_size == (3, 64, 64) and layer4.output_shape == (1, 512, 2, 2)
    assert tree_model.index_of_path("layer4", SHAPE).data() == "512 × 2 × 2"
    assert data.input_size.text() == "3×64×64"
    assert dialogs.calls == []


@pytest.mark.parametrize("bad, says", [("3x0x64", "height must be 1-8192"), ("big", "not an input size"),
                                       ("1x48x192", "cannot take a 1×48×192 input")])
def test_a_bad_input_size_is_refused_and_nothing_changes(loaded, qtbot, dialogs, bad, says):
    data, session = loaded.data_panel, loaded.session
    loaded.tabs.setCurrentWidget(data)
    before, shapes = snapshot(session.plan), [n.output_shape for n in session.workspace.tree.nodes]
    type_line(qtbot, data.input_size, bad)
    assert dialogs.messages("critical") and says in dialogs.messages("critical")[-1]
    assert snapshot(session.plan) == before
    assert [n.output_shape for n in session.workspace.tree.nodes] == shapes
    assert session.workspace.backbone.spec.input_size == (3, 64, 64)
    assert data.input_size.text() == "3×64×64"


# -- gradient clipping, warmup, label smoothing -----------------------------------------------
def test_clipping_warmup_and_smoothing_are_typed_exactly_and_undo(loaded, qtbot, dialogs):
    rows, train, undo = loaded.train_panel.optimization, loaded.session.plan.train, loaded.undo_action
    loaded.tabs.setCurrentWidget(loaded.train_panel)
    assert train.grad_clip is None and not rows.grad_clip.isEnabled()
    qtbot.mouseClick(rows.clip_on, Qt.MouseButton.LeftButton)
    assert train.grad_clip == 1.0 and rows.grad_clip.isEnabled()
    type_into_box(qtbot, rows.grad_clip, "0.25")
    assert train.grad_clip == 0.25
    type_into_box(qtbot, rows.warmup, "1.5")
    assert train.warmup_epochs == 1.5
    type_into_box(qtbot, rows.label_smoothing, "1e-1")
    assert train.label_smoothing == 0.1 and rows.label_smoothing.lineEdit().text() == "0.1"

    undo.trigger()
    train = loaded.session.plan.train  # undo puts back a whole plan
    assert train.label_smoothing == 0.0 and rows.label_smoothing.value() == 0.0
    undo.trigger()
    train = loaded.session.plan.train
    assert train.warmup_epochs == 0.0
    undo.trigger()
    assert loaded.session.plan.train.grad_clip == 1.0 and rows.grad_clip.value() == 1.0
    undo.trigger()
    assert loaded.session.plan.train.grad_clip is None and not rows.clip_on.isChecked()
    assert dialogs.calls == []


@pytest.mark.parametrize("box, bad", [("label_smoothing", "1"), ("label_smoothing", "-0.1"), ("grad_clip", "0"),
                                      ("warmup", "nan"), ("grad_clip", "inf")])
def test_bad_training_values_are_refused_with_a_message(loaded, qtbot, dialogs, box, bad):
    rows = loaded.train_panel.optimization
    loaded.tabs.setCurrentWidget(loaded.train_panel)
    qtbot.mouseClick(rows.clip_on, Qt.MouseButton.LeftButton)
    before = snapshot(loaded.session.plan)
    type_into_box(qtbot, getattr(rows, box), bad)
    assert snapshot(loaded.session.plan) == before
    assert dialogs.messages("critical") and bad.lstrip("-") in dialogs.messages("critical")[-1].lower()


def test_layer_wise_lr_decay_is_ticked_typed_exactly_bounded_by_the_schema_and_undone(loaded, qtbot, dialogs):
    from workbench.plan import TrainConfig
    from workbench.schema_limits import field_limits

    rows, undo = loaded.train_panel.optimization, loaded.undo_action
    loaded.tabs.setCurrentWidget(loaded.train_panel)
    assert loaded.session.plan.train.layer_decay is None and not rows.layer_decay.isEnabled()
    qtbot.mouseClick(rows.decay_on, Qt.MouseButton.LeftButton)
    assert loaded.session.plan.train.layer_decay == 0.75 and rows.layer_decay.isEnabled()
    type_into_box(qtbot, rows.layer_decay, "0.65")
    assert loaded.session.plan.train.layer_decay == 0.65
    assert undo.text().replace("&", "") == "Undo Set layer-wise LR decay"
    # Above the schema's maximum (1): refused with its message, the plan and the box keep 0.65.
    assert field_limits(TrainConfig, "layer_decay").maximum == 1.0
    type_into_box(qtbot, rows.layer_decay, "1.5")
    assert loaded.session.plan.train.layer_decay == 0.65 and rows.layer_decay.value() == 0.65
    assert dialogs.messages("critical") and "1.5 must be at most 1" in dialogs.messages("critical")[-1]
    qtbot.mouseClick(rows.decay_on, Qt.MouseButton.LeftButton)
    assert loaded.session.plan.train.layer_decay is None
    undo.trigger()
    assert loaded.session.plan.train.layer_decay == 0.65 and rows.decay_on.isChecked()
    assert rows.layer_decay.value() == 0.65


# -- unfreeze schedule: groups picked, not typed ----------------------------------------------
def open_groups_editor(qtbot, panel, row: int) -> GroupChecklist:
    view = panel.schedule
    index = panel.schedule_model.index(row, 1)
    rect = view.visualRect(index)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    editor = view.indexWidget(index) or QApplication.focusWidget()
    while editor is not None and not isinstance(editor, GroupChecklist):
        editor = editor.parentWidget()
    assert isinstance(editor, GroupChecklist)
    return editor


def tick_in_popup(qtbot, editor: GroupChecklist, name: str) -> None:
    editor.showPopup()
    view = editor.view()
    qtbot.waitUntil(view.isVisible)
    row = editor.names().index(name)
    rect = view.visualRect(view.model().index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert view.isVisible()  # the popup stays open while ticking
    editor.hidePopup()


def press_enter_in(qtbot, view, editor) -> None:
    """Enter in the box (its read-only line), then the view commits on its next turn."""
    qtbot.keyClick(editor.lineEdit(), Qt.Key.Key_Return)  # the box's line has the focus once the popup is closed
    qtbot.waitUntil(lambda: view.state() != QAbstractItemView.State.EditingState)


def test_schedule_groups_are_picked_from_the_plans_groups(loaded, qtbot, dialogs):
    panel, session = loaded.groups_panel, loaded.session
    qtbot.mouseClick(loaded.tree_panel.linear_probe, Qt.MouseButton.LeftButton)
    show_panel(qtbot, panel)
    qtbot.mouseClick(panel.add_step, Qt.MouseButton.LeftButton)
    step = session.plan.unfreeze[0]
    assert step.groups == ["layer4"]
    editor = open_groups_editor(qtbot, panel, 0)
    assert editor.names() == [g.name for g in session.plan.groups]  # offered, not typed
    assert editor.checked() == ["layer4"] and editor.lineEdit().isReadOnly()
    tick_in_popup(qtbot, editor, "layer3")
    assert editor.lineEdit().text() == "layer3, layer4"
    press_enter_in(qtbot, panel.schedule, editor)
    assert session.plan.unfreeze[0].groups == ["layer3", "layer4"]
    assert panel.schedule_model.index(0, 1).data() == "layer3, layer4"

    loaded.undo_action.trigger()
    assert session.plan.unfreeze[0].groups == ["layer4"]

    editor = open_groups_editor(qtbot, panel, 0)  # unticking every group is refused
    tick_in_popup(qtbot, editor, "layer4")
    press_enter_in(qtbot, panel.schedule, editor)
    assert session.plan.unfreeze[0].groups == ["layer4"]
    assert "pick at least one group" in dialogs.messages("critical")[-1]
