"""The head dialog previews shape and parameters from what the user types, and refuses bad sizes."""

from __future__ import annotations

import timm
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from workbench_ui.head_dialog import HeadDialog


def test_head_dialog_preview_follows_typing(qtbot):
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    dialog = HeadDialog(model, "layer3", 3, (3, 32, 32))
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert "new head 771 parameters" in dialog.result_label.text()  # 256*3 + 3
    qtbot.keyClicks(dialog.hidden, "16")
    assert "new head 4,163 parameters" in dialog.result_label.text() and ok.isEnabled()  # 256*16+16 + 16*3+3
    dialog.pool.setCurrentText("avgmax")
    assert "new head 8,259 parameters" in dialog.result_label.text()
    qtbot.keyClicks(dialog.hidden, ",x")
    assert "whole numbers" in dialog.result_label.text() and not ok.isEnabled()
    qtbot.keyClick(dialog.hidden, Qt.Key.Key_Backspace)
    qtbot.keyClicks(dialog.hidden, "-4")
    assert "must be >= 1" in dialog.result_label.text() and not ok.isEnabled()
    dialog.hidden.clear()
    qtbot.keyClicks(dialog.hidden, "8")
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.result() == dialog.DialogCode.Accepted
    assert dialog.spec is not None and dialog.spec.hidden == [8] and dialog.spec.pool == "avgmax"
    assert isinstance(model.fc, type(model.fc)) and hasattr(model, "layer4")  # the preview left the model whole


def test_tree_context_menu_cuts_and_shows_new_head(window, resnet18_workspace, qtbot):
    from PySide6.QtCore import QTimer

    window.session.set_workspace(resnet18_workspace)
    panel = window.tree_panel
    menu = panel.build_context_menu("layer3")
    action = next(a for a in menu.actions() if a.text() == "Cut here and add a new head…")
    assert action.isEnabled()

    def drive() -> None:
        dialog = panel.head_dialog
        qtbot.keyClicks(dialog.hidden, "32")
        assert "features 256×4×4" in dialog.result_label.text()
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, drive)
    action.trigger()
    ws = window.session.workspace
    assert ws.plan.head.cut == "layer3" and ws.plan.head.hidden == [32]
    paths = {n for n, _ in ws.backbone.module.named_modules()}
    assert "head.1" in paths and "layer4" not in paths and "layer3" in paths
    assert window.session.dirty
    assert panel.model.index_of_path("head", 0).isValid()
