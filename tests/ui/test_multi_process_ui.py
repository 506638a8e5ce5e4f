"""Several processes from the window: tick "CPU × 2 processes (gloo)", Start, see rank 0's curves, Stop, Continue offered.

With WORKBENCH_SCREENSHOTS=DIR (under xvfb-run at 1440×900) the window showing the run's curves is saved
as DIR/multi_process_run.png (docs/screenshots/ holds the one in the README).
"""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.test_run_cycle import click, snap
from workbench.run_catalog import read_run


def test_a_two_process_cpu_run_from_the_window_shows_its_curves_and_stops_resumable(window, wait_idle, qtbot,
                                                                                      tmp_path):
    from tests.test_evaluate import write_tiny_project

    window.resize(1440, 860)
    window.open_project(write_tiny_project(tmp_path, epochs=200))
    wait_idle(window)
    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    picker = panel.processes
    assert picker.choice() is None  # nothing ticked: the ordinary one-process run
    assert picker.cpu_box.isVisible() and not picker.gpu_boxes  # no CUDA here: CPU processes over gloo
    qtbot.mouseClick(picker.cpu_box, Qt.MouseButton.LeftButton)
    assert picker.choice() is not None and picker.choice().processes == 2
    assert "CPU × 2 processes (gloo)" in picker.summary.toolTip() and "torchrun" in picker.summary.text()

    click(qtbot, panel.start_button)
    assert not picker.isEnabled()  # the choice is locked while the run goes
    plots = panel.plots
    qtbot.waitUntil(lambda: plots.point_count("step_loss") >= 30 and plots.point_count("val_loss") >= 10,
                    timeout=150_000)
    log = [panel.log.item(i).text() for i in range(panel.log.count())]
    assert any("× 2 processes" in line for line in log), log  # rank 0's first report
    assert panel.progress.value() > 0 and "epoch" in panel.position.text()
    snap(window, "multi_process_run")

    click(qtbot, panel.stop_button)
    qtbot.waitUntil(lambda: panel.run is None, timeout=120_000)
    assert panel.last_state == "stopped" and panel.continue_button.isEnabled()
    run = read_run(panel.run_dir)
    assert run.status == "stopped" and run.resumable
