"""The Runs tab on runs made by the CLI: list, overlay, open (weights + labels), continue after a restart, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt

from tests.test_cli_train import write_project
from workbench.cli import main


@pytest.fixture
def project_with_runs(tmp_path):
    project = write_project(tmp_path, epochs=2)
    assert main(["train", str(project), "--out", str(tmp_path / "runs" / "a-finished")]) == 0
    # A second run, stopped after its first epoch (as Ctrl-C or closing the window leaves it).
    from workbench.data import open_data
    from workbench.project import load_project
    from workbench.training.reports import EpochReport
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace

    plan = load_project(project)
    plan.train.lr = 0.01
    ws = Workspace.from_plan(plan)
    trainer = Trainer(ws, open_data(plan.data, plan.base_dir, ws.backbone.spec, False), tmp_path / "runs" / "b-stopped")
    for report in trainer.run():
        if isinstance(report, EpochReport):
            trainer.request_stop()
    return project


def open_project(window, project, wait_idle):
    window.open_project(project)
    wait_idle(window)
    window.tabs.setCurrentWidget(window.runs_panel)
    return window.runs_panel


@pytest.mark.slow
def test_runs_tab_lists_overlays_and_opens_a_run(window, project_with_runs, wait_idle, qtbot):
    panel = open_project(window, project_with_runs, wait_idle)
    assert [r.name for r in panel.runs] == ["a-finished", "b-stopped"]
    statuses = {panel.table.item(r, 0).text(): panel.table.item(r, 1).text() for r in range(panel.table.rowCount())}
    assert statuses == {"a-finished": "finished", "b-stopped": "stopped"}
    diffs = {panel.table.item(r, 0).text(): panel.table.item(r, 6).text() for r in range(panel.table.rowCount())}
    assert diffs["a-finished"] == "same recipe" and "train.lr: 0.01 → 0.003" in diffs["b-stopped"]
    panel.select(["a-finished", "b-stopped"])  # two runs: their curves overlay
    assert len(panel.loss_plot.getPlotItem().listDataItems()) == 2
    assert len(panel.acc_plot.getPlotItem().listDataItems()) == 2
    assert not panel.open_button.isEnabled()
    panel.select(["a-finished"])
    assert panel.open_button.isEnabled() and not panel.continue_button.isEnabled()
    qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    wait_idle(window)
    ws = window.session.workspace
    from safetensors.torch import load_file

    trained = load_file(str(project_with_runs.parent / "runs" / "a-finished" / "model.safetensors"))
    state = ws.backbone.module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trained.items())
    assert ws.backbone.spec.label_names == ["blue", "green", "red"]
    assert window.session.weights_label.startswith("run a-finished, epoch 2 of 2")
    assert window.train_panel.plots.point_count("val_accuracy") == 2
    dialog = window.open_export()
    assert "run a-finished, epoch 2 of 2" in dialog.weights.text()
    dialog.close()


@pytest.mark.slow
def test_continue_a_stopped_run_after_a_restart(window, project_with_runs, wait_idle, qtbot):
    panel = open_project(window, project_with_runs, wait_idle)  # a fresh window: nothing in memory
    panel.select(["b-stopped"])
    assert panel.continue_button.isEnabled()
    qtbot.mouseClick(panel.continue_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.train_panel.last_state in ("finished", "failed") and not window.train_panel.is_running(),
                    timeout=180_000)
    assert window.train_panel.last_state == "finished"
    qtbot.waitUntil(lambda: window.session.weights_label.startswith("run b-stopped, epoch 2 of 2"), timeout=10_000)
    panel.refresh()
    assert {r.name: r.status for r in panel.runs}["b-stopped"] == "finished"
    assert {r.name: r.epochs_done for r in panel.runs}["b-stopped"] == 2
    assert window.session.weights_label.startswith("run b-stopped, epoch 2 of 2")


@pytest.mark.slow
def test_export_of_untrained_weights_asks_first(window, project_with_runs, wait_idle, qtbot, dialogs, tmp_path):
    open_project(window, project_with_runs, wait_idle)
    assert window.session.untrained
    dialog = window.open_export()
    assert "initial weights — not trained" in dialog.weights.text()
    out = tmp_path / "untrained-export"
    dialog.path.setText(str(out))
    from PySide6.QtWidgets import QMessageBox

    dialogs.answer = QMessageBox.StandardButton.No
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert any("2 run(s) with trained weights" in m for m in dialogs.messages("question"))
    assert not out.exists() and "Not exported" in dialog.outcome.text()
    dialog.close()
    # Export of a run from the Runs tab writes that run's weights.
    run_dialog = window.export_run(Path(project_with_runs.parent / "runs" / "a-finished"))
    assert "run a-finished" in run_dialog.weights.text()
    run_dialog.path.setText(str(tmp_path / "run-export"))
    qtbot.mouseClick(run_dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not run_dialog.is_busy() and bool(run_dialog.result or run_dialog.error), timeout=120_000)
    assert run_dialog.error is None and (tmp_path / "run-export" / "model.safetensors").is_file()
    run_dialog.close()
