"""The head dialog previews shape and parameters from what the user types, and refuses bad sizes."""

from __future__ import annotations

import timm
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from ui.head_dialog import HeadDialog


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
