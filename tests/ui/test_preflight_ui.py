"""Problems show before Start: near their control, in the Training tab's list, and Start asks about errors."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.ui.test_data_choice import choose_dataset
from tests.ui.test_typed_values import _row, type_into_cell
from workbench.backbone import LoadRequest
from workbench.plan import FinetunePlan, ModelConfig
from workbench.sources import load_backbone
from workbench.workspace import Workspace


@pytest.fixture(scope="module")
def ten_class_backbone():
    return load_backbone(LoadRequest("resnet18", source="timm", num_classes=10, input_size=(3, 32, 32)))


def on_digits(window, qtbot, wait_idle, backbone) -> None:
    plan = FinetunePlan(model=ModelConfig(name="resnet18", num_classes=backbone.spec.num_classes,
                                          input_size=tuple(backbone.spec.input_size)))
    window.session.set_workspace(Workspace.from_backbone(backbone, plan))
    window.tabs.setCurrentWidget(window.data_panel)
    choose_dataset(qtbot, window.data_panel, "digits")
    wait_idle(window)
    qtbot.waitUntil(lambda: window.session.data_facts is not None, timeout=60_000)


def problem_rows(window) -> list[str]:
    items = window.train_panel.problems
    return [items.item(r).text() for r in range(items.count())]


def test_class_count_mismatch_shows_on_the_data_tab_and_in_the_list(window, qtbot, wait_idle, resnet18_backbone):
    on_digits(window, qtbot, wait_idle, resnet18_backbone)  # a 1000-class head on 10 digit classes
    label = window.data_panel.mismatch
    assert label.isVisible()
    assert "10 classes" in label.text() and "1000 outputs" in label.text()
    rows = problem_rows(window)
    assert rows[0].startswith("✖ [class-count-mismatch]")
    assert "✖" in window.summary_bar.warnings.text()
    window.tabs.setCurrentWidget(window.tree_panel)
    item = window.train_panel.problems.item(0)
    window.train_panel.problems.itemActivated.emit(item)  # double-click / Enter on the row
    assert window.tabs.currentWidget() is window.data_panel


@pytest.mark.slow
def test_an_absurd_lr_is_marked_on_its_cell_and_start_asks(window, qtbot, wait_idle, dialogs, ten_class_backbone):
    on_digits(window, qtbot, wait_idle, ten_class_backbone)
    assert problem_rows(window) == [] and window.train_panel.problems.isHidden()
    assert not window.data_panel.mismatch.isVisible()
    panel = window.groups_panel
    type_into_cell(qtbot, panel, "head", panel.groups_model.LR, "5")
    assert window.session.plan.group("head").lr == 5.0  # kept as typed, and flagged
    rows = problem_rows(window)
    assert rows[0].startswith("✖ [lr-too-high] group 'head' trains at lr = 5")
    cell = panel.groups_model.index(_row(panel.groups_model, "head"), panel.groups_model.LR)
    assert cell.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert "lr-too-high" not in str(cell.data(Qt.ItemDataRole.ToolTipRole)) and \
        "error: group 'head' trains at lr = 5" in cell.data(Qt.ItemDataRole.ToolTipRole)

    dialogs.answer = QMessageBox.StandardButton.No
    window.tabs.setCurrentWidget(window.train_panel)
    qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    asked = [text for kind, title, text in dialogs.calls if kind == "question"]
    assert asked and "[lr-too-high]" in asked[-1] and "Start anyway?" in asked[-1]
    assert window.train_panel.run is None  # not started

    window.undo_action.trigger()
    assert problem_rows(window) == [] and window.train_panel.problems.isHidden()
    assert panel.groups_model.index(_row(panel.groups_model, "head"), panel.groups_model.LR).data(
        Qt.ItemDataRole.BackgroundRole) is None


def test_batch_size_one_with_training_batchnorm_is_an_error(window, qtbot, wait_idle, ten_class_backbone):
    on_digits(window, qtbot, wait_idle, ten_class_backbone)
    box = window.train_panel.batch_size
    window.tabs.setCurrentWidget(window.train_panel)
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(box, "1")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert window.session.plan.train.batch_size == 1
    rows = problem_rows(window)
    assert rows[0].startswith("✖ [batchnorm-batch-of-one]") and "one value per channel" in rows[0]
    window.tree_panel.batchnorm.setCurrentIndex(window.tree_panel.batchnorm.findData("eval"))
    rows = problem_rows(window)  # BatchNorm in inference mode: nothing trains on one image
    assert not any("batchnorm-batch-of-one" in row for row in rows) and not any(r.startswith("✖") for r in rows)
