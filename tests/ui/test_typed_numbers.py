"""Typed numbers are never altered: out of range stays typed, marked wrong with the reason, and is not stored.

Real key events on the real boxes; the limits are the schema's (workbench/plan.py), on every tab.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.ui.test_typed_values import type_into_cell
from workbench.plan import TrainConfig
from workbench.schema_limits import field_limits

CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture
def loaded(window, resnet18_workspace):
    window.session.set_workspace(resnet18_workspace)
    return window


def type_number(qtbot, box, text: str) -> None:
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(box.lineEdit(), text)
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)


@pytest.mark.slow
@pytest.mark.parametrize(("box", "key", "typed", "reason"), [
    ("epochs", "epochs", "999999", "epochs must be <= 100,000, not 999,999"),
    ("batch_size", "batch_size", "100000", "batch_size must be <= 65,536, not 100,000"),
    ("batch_size", "batch_size", "-5", "batch_size must be >= 1, not -5"),
    ("epochs", "epochs", "0", "epochs must be >= 1, not 0"),
])
def test_an_out_of_range_number_stays_typed_marked_wrong_and_is_not_stored(loaded, qtbot, dialogs, box, key, typed,
                                                                         reason):
    panel, plan = loaded.train_panel, loaded.session.plan
    widget = getattr(panel, box)
    before = getattr(plan.train, key)
    type_number(qtbot, widget, typed)
    assert getattr(plan.train, key) == before  # nothing stored, nothing altered
    assert widget.lineEdit().text() == typed  # what was typed stays there
    assert widget.is_wrong() and widget.problem.text() == reason and not widget.problem.isHidden()
    assert reason in widget.toolTip()
    assert not loaded.session.undo_stack.canUndo()
    assert dialogs.calls == []  # the reason is inline: no modal on top of it
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)  # Start is refused while a value is wrong
    assert panel.run is None and any(reason in text for text in dialogs.messages("critical"))


def test_numbers_at_the_schema_limits_are_stored_exactly(loaded, qtbot, dialogs):
    panel, plan = loaded.train_panel, loaded.session.plan
    type_number(qtbot, panel.epochs, "999999")
    type_number(qtbot, panel.epochs, "100000")  # the schema's maximum, not a widget's 10,000
    assert plan.train.epochs == 100_000 and not panel.epochs.is_wrong()
    type_number(qtbot, panel.batch_size, "65536")
    assert plan.train.batch_size == 65_536
    type_number(qtbot, panel.batch_size, "1,000")
    assert plan.train.batch_size == 1000 and panel.batch_size.lineEdit().text() == "1000"
    assert dialogs.calls == []
    qtbot.keyClick(panel.batch_size.lineEdit(), Qt.Key.Key_Up)  # the arrows step within the limits
    assert plan.train.batch_size == 1001


@pytest.mark.slow
def test_every_tab_takes_its_epoch_limit_from_the_schema(loaded, qtbot, dialogs):
    schema = field_limits(TrainConfig, "epochs")
    assert loaded.train_panel.epochs.limits == schema == loaded.compare_panel.epochs.limits
    compare = loaded.compare_panel
    type_number(qtbot, compare.epochs, "5000")  # over the Compare tab's old 1,000 limit: kept as typed
    assert compare.epochs.value() == 5000 and compare.epochs.lineEdit().text() == "5000"
    type_number(qtbot, compare.epochs, "999999")
    assert compare.epochs.lineEdit().text() == "999999" and compare.epochs.is_wrong()
    qtbot.mouseClick(compare.start_button, Qt.MouseButton.LeftButton)
    assert compare.run is None and "must be <= 100,000" in compare.status.text()


@pytest.mark.parametrize(("typed", "reason"), [("-1", "-1 must be greater than 0"), ("0", "0 must be greater than 0")])
def test_the_lr_cell_says_why_it_refuses_a_rate(loaded, qtbot, dialogs, typed, reason):
    groups, plan = loaded.groups_panel, loaded.session.plan
    lr_col = groups.groups_model.LR
    type_into_cell(qtbot, groups, "layer1", lr_col, "6.56e-05")
    type_into_cell(qtbot, groups, "layer1", lr_col, typed)
    assert plan.group("layer1").lr == 6.56e-05
    assert any(reason in text for text in dialogs.messages()), dialogs.calls
