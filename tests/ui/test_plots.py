"""Training plots at 1440×900 with both docks open: legends and titles outside the data, log scale, reset; the log's hint."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt

from workbench.training.reports import EpochReport

GROUPS = ("stem", "early", "middle", "top", "head")  # the demo's five groups


def test_legends_and_titles_sit_outside_the_data_and_are_never_cut(window, qtbot):
    window.resize(1440, 860)
    assert window.model_dock.isVisible() and window.groups_dock.isVisible()
    window.tabs.setCurrentWidget(window.train_panel)
    plots = window.train_panel.plots
    plots.add_steps(list(range(1, 51)), [1.0 / s for s in range(1, 51)], [{g: 1e-3 for g in GROUPS}] * 50)
    plots.add_epoch(0, 1.0, 1.1, 0.5, 0.4)
    qtbot.waitUntil(lambda: plots.point_count("step_loss") == 50, timeout=5000)
    assert plots.learning_rate.legend.names() == list(GROUPS)
    assert plots.epoch_accuracy.legend.names() == ["train", "val"]
    for panel in (plots.step_loss, plots.learning_rate, plots.epoch_loss, plots.epoch_accuracy):
        item = panel.getPlotItem()
        assert not any(isinstance(child, pg.LegendItem) for child in item.vb.allChildItems())  # nothing over the curves
        plot_box, legend, title = panel.widget.geometry(), panel.legend, panel.title
        assert plot_box.width() >= 190 and plot_box.height() >= 150, (panel.title.text(), plot_box)
        if legend.isVisible():
            assert legend.geometry().top() >= plot_box.bottom()
            assert legend.height() >= legend.heightForWidth(legend.width())  # every wrapped line fits
        assert title.geometry().bottom() <= plot_box.top()
        assert title.height() >= title.heightForWidth(title.width())


def test_log_scale_toggle_and_a_new_run_resets_the_axes(window, qtbot):
    plots = window.train_panel.plots
    plots.add_steps([1, 2, 3], [2.0, 1.0, 0.5], [{"head": 1e-3}] * 3)
    qtbot.waitUntil(lambda: plots.point_count("step_loss") == 3, timeout=5000)
    window.tabs.setCurrentWidget(window.train_panel)
    qtbot.mouseClick(plots.log_loss, Qt.MouseButton.LeftButton)
    for panel in (plots.step_loss, plots.epoch_loss):
        assert panel.getPlotItem().ctrl.logYCheck.isChecked()
    assert not plots.epoch_accuracy.getPlotItem().ctrl.logYCheck.isChecked()
    qtbot.mouseClick(plots.log_loss, Qt.MouseButton.LeftButton)
    assert not plots.step_loss.getPlotItem().ctrl.logYCheck.isChecked()

    plots.step_loss.getPlotItem().setXRange(100, 200)  # the user zoomed in
    plots.epoch_accuracy.getPlotItem().setXRange(5, 6)
    assert not plots.step_loss.getPlotItem().vb.autoRangeEnabled()[0]
    plots.clear()  # what a new run does
    assert all(plots.step_loss.getPlotItem().vb.autoRangeEnabled())
    assert plots.epoch_accuracy.getPlotItem().vb.autoRangeEnabled()[0]
    low, high = plots.epoch_accuracy.getPlotItem().vb.viewRange()[1]
    assert low <= 0.0 and high >= 1.0 and high - low < 1.1


def test_the_log_names_a_stuck_validation_once(window, wait_idle, qtbot, tmp_path):
    from tests.test_evaluate import write_tiny_project

    window.open_project(write_tiny_project(tmp_path))  # random-init test_resnet: BatchNorm, no pretrained weights
    wait_idle(window)
    panel = window.train_panel
    for epoch, (train, val) in enumerate([(0.5, 0.33), (0.9, 0.34), (0.95, 0.33)]):
        panel._on_epoch(EpochReport(epoch, 3, 1.0, train, 1.2, val, None, 1.0))  # the worker's epoch signal
    texts = [panel.log.item(i).text() for i in range(panel.log.count())]
    hints = [t for t in texts if "Hint — val-accuracy-at-chance" in t]
    assert len(hints) == 1 and "random-init trunk" in hints[0] and "pretrained weights" in hints[0]
    assert texts.index(hints[0]) == 2  # right after the epoch that showed it (epoch 2 of 3)
    assert panel.hint in hints[0]
