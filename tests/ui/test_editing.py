"""Editing a loaded model in the window: presets, context menu, BatchNorm policy, groups, LRs, schedule."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit

from tests.ui.test_typed_values import show_panel
from workbench_ui.qt_layer_tree import LR, NAME

CHECK = Qt.ItemDataRole.CheckStateRole


@pytest.fixture
def loaded(window, resnet18_workspace):
    window.session.set_workspace(resnet18_workspace)
    return window


def tree_lr(window, path: str) -> str:
    model = window.tree_panel.model
    return model.data(model.index_of_path(path, LR))


def check_state(window, path: str) -> Qt.CheckState:
    model = window.tree_panel.model
    return model.data(model.index_of_path(path, NAME), CHECK)


def test_presets_change_plan_totals_and_boxes(loaded, qtbot):
    panel, session = loaded.tree_panel, loaded.session
    total = session.resolution.total_params

    qtbot.mouseClick(panel.linear_probe, Qt.MouseButton.LeftButton)
    fc = loaded.session.workspace.tree.node("fc").param_count
    assert session.plan.freeze.frozen == [""] and session.plan.freeze.unfrozen == ["fc"]
    assert session.resolution.trainable_params == fc
    assert loaded.summary_bar.summary.text() == session.resolution.summary()
    assert f"{fc:,} of {total:,}" in loaded.summary_bar.summary.text()
    assert check_state(loaded, "") == Qt.CheckState.PartiallyChecked
    assert check_state(loaded, "layer1") == Qt.CheckState.Unchecked
    assert check_state(loaded, "fc") == Qt.CheckState.Checked

    panel.stages.setValue(2)
    qtbot.mouseClick(panel.freeze_stages, Qt.MouseButton.LeftButton)
    assert check_state(loaded, "layer1") == Qt.CheckState.Unchecked
    assert check_state(loaded, "layer2") == Qt.CheckState.Unchecked
    assert check_state(loaded, "layer3") == Qt.CheckState.Checked
    assert check_state(loaded, "fc") == Qt.CheckState.Checked

    qtbot.mouseClick(panel.full_finetune, Qt.MouseButton.LeftButton)
    assert session.resolution.trainable_params == total
    assert check_state(loaded, "") == Qt.CheckState.Checked

    panel.batchnorm.setCurrentIndex(panel.batchnorm.findData("train"))
    assert session.plan.freeze.batchnorm == "train"
    assert session.dirty and loaded.isWindowModified()


def test_clicking_a_checkbox_in_the_view_freezes(loaded, qtbot):
    view = loaded.tree_panel.view
    model = loaded.tree_panel.model
    rect = view.visualRect(model.index_of_path("fc"))
    option_x = rect.left() + view.style().pixelMetric(view.style().PixelMetric.PM_IndicatorWidth) // 2 + 4
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center().__class__(option_x, rect.center().y()))
    assert loaded.session.plan.freeze.frozen == ["fc"]
    assert check_state(loaded, "fc") == Qt.CheckState.Unchecked


def test_context_menu_actions(loaded):
    panel, session = loaded.tree_panel, loaded.session

    def trigger(path: str, text: str) -> None:
        menu = panel.build_context_menu(path)
        actions = {a.text(): a for a in menu.actions()}
        actions[text].trigger()

    trigger("layer2", "Freeze everything up to layer2")
    for path in ("conv1", "bn1", "layer1", "layer2"):
        assert check_state(loaded, path) == Qt.CheckState.Unchecked, path
    assert check_state(loaded, "layer3") == Qt.CheckState.Checked

    trigger("layer1", "Unfreeze layer1")
    assert check_state(loaded, "layer1") == Qt.CheckState.Checked
    assert check_state(loaded, "layer2") == Qt.CheckState.Unchecked

    trigger("layer3.0.bn1", "Freeze all BatchNorm2d layers")
    assert "type:BatchNorm2d" in session.plan.freeze.frozen
    assert check_state(loaded, "layer4.1.bn2") == Qt.CheckState.Unchecked
    assert check_state(loaded, "layer4.1.conv2") == Qt.CheckState.Checked

    group_menu = next(a.menu() for a in panel.build_context_menu("layer4.1").actions() if a.text() == "Assign to group")
    next(a for a in group_menu.actions() if a.text() == "head").trigger()
    assert "layer4.1" in session.plan.group("head").modules
    assert session.resolution.node_group(session.workspace.tree.node("layer4.1").index) == "head"
    model = panel.model
    assert model.data(model.index_of_path("layer4.1", 5)) == "head"


def test_filter_keeps_matching_rows_and_their_ancestors(loaded):
    panel = loaded.tree_panel
    model, view = panel.model, panel.view
    root = model.index_of(0)
    panel.filter.setText("layer3.1.conv")
    visible_top = [model.index(r, 0, root).data() for r in range(model.rowCount(root)) if not view.isRowHidden(r, root)]
    assert visible_top == ["layer3"]
    block = model.index_of_path("layer3.1")
    assert panel.is_shown("layer3.1") and not panel.is_shown("layer3.0") and not panel.is_shown("layer3.1.bn1")
    shown = sorted(model.index(r, 0, block).data() for r in range(model.rowCount(block)) if not view.isRowHidden(r, block))
    assert shown == ["conv1", "conv2"]
    assert view.isExpanded(block)
    panel.filter.setText("BatchNorm")  # a type; a match keeps what it holds, e.g. the downsample's children
    assert panel.is_shown("layer2.0.downsample") and panel.is_shown("layer2.0.downsample.1")
    assert not panel.is_shown("layer2.0.conv1") and not panel.is_shown("fc")
    panel.filter.setText("")
    assert not any(view.isRowHidden(r, root) for r in range(model.rowCount(root)))
    assert all(panel.is_shown(n.path) for n in model.tree.nodes)


def test_edit_group_lr_updates_table_and_tree(loaded):
    groups = loaded.groups_panel.groups_model
    names = [groups.index(r, 0).data() for r in range(groups.rowCount())]
    head = names.index("head")
    assert groups.setData(groups.index(head, groups.LR), 0.05)
    assert loaded.session.plan.group("head").lr == 0.05
    assert groups.index(head, groups.LR).data() == "0.05"
    assert tree_lr(loaded, "fc") == "0.05"
    assert tree_lr(loaded, "layer1") == "0.001"
    assert groups.setData(groups.index(head, groups.WD), 0.2)
    assert loaded.session.plan.group("head").weight_decay == 0.2
    assert not groups.setData(groups.index(head, groups.LR), "not a number")


def test_discriminative_lrs_update_live(loaded):
    panel = loaded.groups_panel
    panel.base_lr.setValue(0.01)
    panel.factor.setValue(0.5)
    panel.discriminative.setChecked(True)
    plan = loaded.session.plan
    names = [g.name for g in plan.groups]
    assert names[-1] == "head"
    last = len(names) - 1
    for i, g in enumerate(plan.groups):
        assert g.lr == pytest.approx(0.01 * 0.5 ** (last - i))
    assert tree_lr(loaded, "fc") == "0.01"
    assert tree_lr(loaded, "layer4") == "0.005"

    panel.factor.setValue(0.1)  # live: no button press
    assert plan.group("layer4").lr == pytest.approx(0.001)
    assert tree_lr(loaded, "layer4") == "0.001"
    table = panel.groups_model
    row = [table.index(r, 0).data() for r in range(table.rowCount())].index("layer4")
    assert table.index(row, table.LR).data() == "0.001"


def test_unfreeze_schedule_is_editable_and_validated(loaded, qtbot, dialogs):
    session = loaded.session
    qtbot.mouseClick(loaded.tree_panel.linear_probe, Qt.MouseButton.LeftButton)
    panel = loaded.groups_panel
    qtbot.mouseClick(panel.add_step, Qt.MouseButton.LeftButton)
    assert len(session.plan.unfreeze) == 1
    step = session.plan.unfreeze[0]
    assert step.epoch == 1 and step.groups == ["layer4"]

    schedule = panel.schedule_model
    panel_problems: list[str] = []
    schedule.problem.connect(panel_problems.append)
    assert schedule.setData(schedule.index(0, 1), "layer4, layer3")
    assert session.plan.unfreeze[0].groups == ["layer4", "layer3"]
    assert schedule.setData(schedule.index(0, 0), 2)
    assert session.plan.unfreeze[0].epoch == 2

    assert not schedule.setData(schedule.index(0, 1), "layer4, no_such_group")
    assert session.plan.unfreeze[0].groups == ["layer4", "layer3"]  # rolled back
    assert any("no_such_group" in m for m in dialogs.messages("critical"))

    # The step's LR (LP-FT: every group from then on), typed into the cell with real events, kept exactly.
    show_panel(qtbot, panel)
    view = panel.schedule
    cell = schedule.index(0, schedule.LR)
    assert cell.data() == ""
    rect = view.visualRect(cell)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit) and editor.parentWidget() is view.viewport()
    qtbot.keyClicks(editor, "3.3e-4")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not editor)
    assert session.plan.unfreeze[0].lr == 3.3e-4 and cell.data() == "0.00033"
    assert not schedule.setData(cell, "fast")
    assert session.plan.unfreeze[0].lr == 3.3e-4 and "'fast' is not a number" in panel_problems[-1]
    assert not schedule.setData(cell, "0")
    assert schedule.setData(cell, "")  # blank: each group's own LR again
    assert session.plan.unfreeze[0].lr is None

    schedule.remove_step(0)
    assert session.plan.unfreeze == []


def test_parameter_free_modules_show_no_box_whatever_the_preset(loaded, qtbot):
    """ReLU and pooling have no state: no checkbox, no frozen styling, under every preset."""
    panel, model = loaded.tree_panel, loaded.tree_panel.model
    for button in (panel.linear_probe, panel.full_finetune, panel.linear_probe):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        for path in ("act1", "maxpool", "global_pool", "layer1.0.act1"):
            index = model.index_of_path(path, NAME)
            assert model.data(index, CHECK) is None, path
            assert not model.flags(index) & Qt.ItemFlag.ItemIsUserCheckable
            assert model.data(index, Qt.ItemDataRole.BackgroundRole) is None
        assert check_state(loaded, "layer1.0.conv1") in (Qt.CheckState.Checked, Qt.CheckState.Unchecked)
