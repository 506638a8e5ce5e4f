"""GUI: freezing BatchNorm on a random-init model shows the batchnorm-frozen-untrained warning."""

from __future__ import annotations

from PySide6.QtCore import Qt


def test_summary_bar_warns_about_frozen_untrained_batchnorm(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    bar, panel = window.summary_bar, window.tree_panel
    assert "untrained statistics" not in bar.warnings.text()  # nothing frozen yet

    qtbot.mouseClick(panel.linear_probe, Qt.MouseButton.LeftButton)
    assert not bar.warnings.isHidden()
    assert "[batchnorm-frozen-untrained]" in bar.warnings.text()  # named on the one line the bar shows
    full = bar.warnings.full_text()  # all of it: in the tooltip, and in the Training tab's list
    assert "untrained statistics" in full and "pretrained weights" in full
    assert "pretrained weights" in bar.warnings.toolTip()

    panel.batchnorm.setCurrentIndex(panel.batchnorm.findData("train"))
    assert "untrained statistics" not in bar.warnings.text()
