"""The cost line in the summary bar follows the boxes ticked in the real tree view."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt


def test_summary_bar_cost_updates_when_a_box_is_ticked(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    bar = window.summary_bar
    assert "1.00× the step cost and 1.00× the optimizer memory" in bar.cost.text()

    qtbot.mouseClick(window.tree_panel.linear_probe, Qt.MouseButton.LeftButton)
    probe_text = bar.cost.text()
    assert "1.00× the step cost" not in probe_text and "with the feature cache, epochs 2+" in probe_text

    qtbot.mouseClick(window.tree_panel.full_finetune, Qt.MouseButton.LeftButton)
    view, model = window.tree_panel.view, window.tree_panel.model
    rect = view.visualRect(window.tree_panel.proxy.mapFromSource(model.index_of_path("fc")))
    x = rect.left() + view.style().pixelMetric(view.style().PixelMetric.PM_IndicatorWidth) // 2 + 4
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, rect.center().y()))
    assert window.session.plan.freeze.frozen == ["fc"]
    # fc frozen: its 2 x weights of optimizer state disappear, so the memory ratio drops below 1.
    assert "1.00× the optimizer memory" not in bar.cost.text()
