"""Values the user types are kept exactly: typed into the real editors, Enter pressed, read back from the plan."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget

from workbench_ui.widgets import ScientificSpinBox


@pytest.fixture
def loaded(window, resnet18_workspace):
    window.session.set_workspace(resnet18_workspace)
    return window


def _row(table_model, name: str) -> int:
    return [table_model.index(r, 0).data() for r in range(table_model.rowCount())].index(name)


def show_panel(qtbot, panel) -> None:
    """Bring the panel's dock to the front, as a user clicking its tab would."""
    widget = panel
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    if widget is not None:
        widget.show()
        widget.raise_()
    qtbot.waitUntil(panel.table.isVisible)


def open_cell_editor(qtbot, panel, group: str, column: int) -> ScientificSpinBox:
    show_panel(qtbot, panel)
    model, view = panel.groups_model, panel.table
    index = model.index(_row(model, group), column)
    view.scrollTo(index)
    rect = view.visualRect(index)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    editor = QApplication.focusWidget()
    assert isinstance(editor, ScientificSpinBox) and editor.parentWidget() is view.viewport(), type(editor)
    return editor


def type_into_cell(qtbot, panel, group: str, column: int, text: str) -> None:
    """Double-click the cell, replace its text as a user would, press Enter."""
    editor = open_cell_editor(qtbot, panel, group, column)
    qtbot.keyClick(editor, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not editor)  # the view commits on its next event loop turn


def press_enter_in_cell(qtbot, panel, group: str, column: int) -> str:
    """Open the cell's editor, read what it shows, press Enter without changing anything."""
    editor = open_cell_editor(qtbot, panel, group, column)
    shown = editor.lineEdit().text()
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not editor)
    return shown


def test_lr_cells_keep_exactly_what_was_typed(loaded, qtbot, dialogs):
    panel, plan = loaded.groups_panel, loaded.session.plan
    lr_col = panel.groups_model.LR
    type_into_cell(qtbot, panel, "layer1", lr_col, "6.56e-05")
    assert plan.group("layer1").lr == 6.56e-05
    assert press_enter_in_cell(qtbot, panel, "layer1", lr_col) == "6.56e-05"
    assert plan.group("layer1").lr == 6.56e-05  # Enter on an unchanged value changes nothing
    type_into_cell(qtbot, panel, "layer1", lr_col, "0.00003")
    assert plan.group("layer1").lr == 3e-05
    type_into_cell(qtbot, panel, "head", lr_col, "1e6")
    assert plan.group("head").lr == 1e6
    type_into_cell(qtbot, panel, "layer2", lr_col, "1.234567e-7")
    assert plan.group("layer2").lr == 1.234567e-07
    assert press_enter_in_cell(qtbot, panel, "layer2", lr_col) == "1.234567e-07"
    assert dialogs.calls == []


@pytest.mark.parametrize("bad", ["0", "-1e-3", "nan", "inf"])
def test_lr_cells_refuse_nonpositive_and_nonfinite_with_a_message(loaded, qtbot, dialogs, bad):
    panel, plan = loaded.groups_panel, loaded.session.plan
    type_into_cell(qtbot, panel, "layer1", panel.groups_model.LR, "2e-4")
    type_into_cell(qtbot, panel, "layer1", panel.groups_model.LR, bad)
    assert plan.group("layer1").lr == 2e-4
    messages = dialogs.messages("critical")
    assert messages and "Not applied" in messages[-1] and bad.lstrip("-") in messages[-1].lower()


def test_weight_decay_cell_takes_zero_and_scientific(loaded, qtbot, dialogs):
    panel, plan = loaded.groups_panel, loaded.session.plan
    type_into_cell(qtbot, panel, "head", panel.groups_model.WD, "0")
    assert plan.group("head").weight_decay == 0.0
    type_into_cell(qtbot, panel, "head", panel.groups_model.WD, "5e-5")
    assert plan.group("head").weight_decay == 5e-05
    type_into_cell(qtbot, panel, "head", panel.groups_model.WD, "-0.1")
    assert plan.group("head").weight_decay == 5e-05 and dialogs.messages("critical")


def type_into_box(qtbot, box: ScientificSpinBox, text: str) -> None:
    qtbot.waitUntil(box.isVisible)
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_default_lr_has_no_maximum_and_no_rounding(window, resnet18_workspace, qtbot, dialogs):
    resnet18_workspace.plan.train.lr = 1e6  # a project with lr = 1e6
    window.session.set_workspace(resnet18_workspace)
    box = window.groups_panel.default_lr
    show_panel(qtbot, window.groups_panel)
    assert box.value() == 1e6 and box.lineEdit().text() == "1e+06"
    type_into_box(qtbot, box, "3.3e-4")
    assert window.session.plan.train.lr == 3.3e-4
    type_into_box(qtbot, box, "0")
    assert window.session.plan.train.lr == 3.3e-4 and "Not applied" in dialogs.messages("critical")[-1]
    window.groups_panel.discriminative.setChecked(True)
    type_into_box(qtbot, window.groups_panel.factor, "0.384615384615")  # 1/2.6, not 0.38
    assert window.groups_panel.factor.value() == 0.384615384615
    lrs = [g.lr for g in window.session.plan.groups]
    assert lrs[-2] / lrs[-1] == pytest.approx(0.384615384615, rel=1e-12)


def test_discriminative_box_follows_the_plan_and_keeps_the_head_lr(loaded, qtbot, window, resnet18_workspace):
    panel, plan = loaded.groups_panel, loaded.session.plan
    type_into_cell(qtbot, panel, "head", panel.groups_model.LR, "0.02")
    assert not panel.discriminative.isChecked()
    assert panel.base_lr.value() == 0.02  # the base is the head's LR as set
    panel.discriminative.setChecked(True)  # the user ticks the box
    assert plan.group("head").lr == 0.02
    lrs = [g.lr for g in plan.groups]
    assert lrs[-2] == pytest.approx(0.01) and lrs[0] == pytest.approx(0.02 * 0.5 ** (len(lrs) - 1))
    type_into_cell(qtbot, panel, "layer1", panel.groups_model.LR, "0.5")
    assert not panel.discriminative.isChecked()  # the plan is no longer a discriminative one
    # A new workspace (e.g. Open demo) shows its own plan, not stale values.
    from workbench.plan import FinetunePlan
    from workbench.workspace import Workspace

    fresh = Workspace.from_backbone(resnet18_workspace.backbone, FinetunePlan())
    window.session.set_workspace(fresh)
    assert not panel.discriminative.isChecked() and panel.base_lr.value() == fresh.plan.train.lr


def test_an_exact_model_name_typed_always_wins(window, qtbot, wait_idle):
    window.start_background_init()
    wait_idle(window)
    panel = window.model_panel
    panel.input_size.set_size((3, 64, 64))
    for typed, other in (("efficientnet_b7", "tf_efficientnet_b7"), ("convnext_atto", "convnext_atto_rms")):
        panel.search.clear()
        qtbot.keyClicks(panel.search, typed)
        assert panel.names_view.currentIndex().data() == typed, other
        assert panel.selected_name() == typed
    panel.search.clear()
    assert panel.select_name("resnet10t")  # something else highlighted, then an exact name typed + Enter
    qtbot.keyClicks(panel.search, "resnet18")
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    wait_idle(window)
    assert window.session.workspace.backbone.spec.architecture == "resnet18"
    assert panel.names_view.currentIndex().data() == "resnet18" and panel.search.text() == "resnet18"
