"""The window end to end: fast start, loading models, bad files, projects, training, export, closing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from workbench_ui.plots import TrainingPlots


def test_window_appears_before_torch_is_imported():
    code = textwrap.dedent("""
        import os, sys, time
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        start = time.perf_counter()
        from workbench_ui.app import create_application
        from workbench_ui.main_window import MainWindow
        app = create_application()
        window = MainWindow()
        window.show()
        app.processEvents()
        print("torch" in sys.modules, "timm" in sys.modules, window.isVisible(), round(time.perf_counter() - start, 2))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    torch_loaded, timm_loaded, visible, _seconds = out.stdout.split()
    assert (torch_loaded, timm_loaded, visible) == ("False", "False", "True")


def test_load_timm_model_from_the_picker(window, qtbot, wait_idle):
    window.start_background_init()
    assert window.busy_bar.isVisible()
    wait_idle(window)
    panel = window.model_panel
    assert panel.load_button.isEnabled()
    assert window.train_panel.device.findData("cpu") >= 0
    panel.search.setText("resnet1")
    assert panel.select_name("resnet18")
    assert "pretrained" in panel.availability.text()
    panel.input_size.set_size((3, 64, 64))
    qtbot.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    wait_idle(window)
    ws = window.session.workspace
    assert ws is not None and ws.backbone.spec.architecture == "resnet18"
    assert ws.backbone.spec.input_size == (3, 64, 64)
    assert window.tree_panel.model.rowCount() == 1
    assert "parameters trainable" in window.summary_bar.summary.text()
    assert "resnet18" in window.tree_panel.info.text()


def test_load_onnx_by_drag_and_drop(window, wait_idle, tiny_onnx):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tiny_onnx))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    wait_idle(window)
    ws = window.session.workspace
    assert ws is not None and ws.backbone.source == "onnx"
    res = window.session.resolution
    assert res.trainable_params == res.total_params > 0
    assert "ONNX import" in window.tree_panel.info.text()
    assert str(tiny_onnx.resolve()) in window.recent_files()
    # Ticks work on an imported graph too.
    model = window.tree_panel.model
    conv = next(n for n in ws.tree.nodes if n.type_name == "Conv2d")
    model.setData(model.index_of(conv.index), Qt.CheckState.Unchecked, Qt.ItemDataRole.CheckStateRole)
    assert window.session.resolution.trainable_params == res.total_params - conv.param_count


@pytest.mark.parametrize("name, content", [("broken.onnx", b"this is not a protobuf"),
                                           ("broken.toml", b"[model\nname = 3"),
                                           ("weights.safetensors", b"\x00\x01garbage")])
def test_corrupt_file_shows_an_error_dialog(window, wait_idle, dialogs, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    window.open_path(str(path))
    wait_idle(window)
    errors = dialogs.messages("critical")
    assert len(errors) == 1 and errors[0]
    assert "Traceback" not in errors[0]
    assert window.session.workspace is None
    assert not window.is_busy()


def test_project_save_prompt_and_reopen(window, wait_idle, dialogs, resnet18_workspace, tmp_path, qtbot):
    window.session.set_workspace(resnet18_workspace)
    qtbot.mouseClick(window.tree_panel.linear_probe, Qt.MouseButton.LeftButton)
    assert window.session.dirty

    # Unsaved changes: Cancel keeps everything, Discard lets New go ahead.
    from PySide6.QtWidgets import QMessageBox

    dialogs.answer = QMessageBox.StandardButton.Cancel
    window.new_project()
    assert window.session.workspace is not None
    assert dialogs.messages("warning")

    project = tmp_path / "probe.toml"
    dialogs.answer = None
    assert window.save_to(project)
    assert project.is_file() and not window.session.dirty
    assert window.windowTitle().startswith("probe.toml")
    assert str(project.resolve()) in window.recent_files()

    window.new_project()
    assert window.session.workspace is None
    window.open_path(str(project))
    wait_idle(window)
    plan = window.session.plan
    assert plan.freeze.frozen == [""] and plan.freeze.unfrozen == ["fc"]
    assert window.session.project_path == project
    assert window.session.resolution.trainable_params == window.session.workspace.tree.node("fc").param_count


def test_settings_keep_recent_files_and_layout(window, tmp_path):
    window.add_recent(tmp_path / "a.toml")
    window.add_recent(tmp_path / "b.onnx")
    window.add_recent(tmp_path / "a.toml")
    assert [Path(p).name for p in window.recent_files()] == ["a.toml", "b.onnx"]
    assert window.model_panel.recent.count() == 2
    window.groups_dock.hide()
    window.close()
    from PySide6.QtCore import QSettings

    from workbench_ui.main_window import MainWindow

    again = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    again.show()
    assert not again.groups_dock.isVisible()
    assert [Path(p).name for p in again.recent_files()] == ["a.toml", "b.onnx"]
    again.close()
    again.deleteLater()


def test_plots_buffer_and_redraw_on_a_timer_nan_safe(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    steps = list(range(1, 20_001))
    losses = [float("nan") if i % 1000 == 0 else (float("inf") if i == 5 else 1.0 / i) for i in steps]
    plots.add_steps(steps, losses, [{"head": 1e-3, "stem": 0.0}] * len(steps))
    assert plots.point_count("step_loss") == 0  # nothing drawn until the timer fires
    qtbot.waitUntil(lambda: plots.point_count("step_loss") == 20_000, timeout=2000)
    x, y = plots.curves["step_loss"].item.getOriginalDataset()
    assert len(x) == 20_000 and np.isnan(y[999]) and np.isnan(y[4])
    assert set(k for k in plots.curves if k.startswith("lr:")) == {"lr:head", "lr:stem"}
    plots.add_epoch(0, 1.0, None, 0.5, None)
    qtbot.waitUntil(lambda: plots.point_count("train_loss") == 1, timeout=2000)
    plots.clear()
    assert plots.point_count("step_loss") == 0 and "lr:head" not in plots.curves


def start_demo_training(window, wait_idle, qtbot, epochs: int = 1) -> None:
    window.open_demo()
    wait_idle(window)
    window.session.plan.train.num_workers = 0  # no DataLoader processes in tests
    window.train_panel.epochs.setValue(epochs)
    window.train_panel.batch_size.setValue(16)
    assert window.session.plan.train.epochs == epochs and window.session.plan.train.batch_size == 16
    assert window.data_panel.scan is not None and len(window.data_panel.scan.classes) == 10
    qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    assert window.train_panel.is_running()


@pytest.mark.slow
def test_train_pause_resume_stop(window, wait_idle, qtbot, dialogs, tmp_path):
    start_demo_training(window, wait_idle, qtbot)
    panel = window.train_panel
    thread = panel.run._thread
    assert not window.tree_panel.linear_probe.isEnabled()  # editing is locked while training
    qtbot.waitUntil(lambda: panel.plots.point_count("step_loss") >= 3, timeout=60_000)
    assert "lr:head" in panel.plots.curves
    assert panel.progress.value() >= 1 and "images/s" in panel.speed.text()

    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.last_state == "paused", timeout=30_000)
    qtbot.wait(300)
    drawn = panel.plots.curves["step_loss"].series.size
    qtbot.wait(600)
    assert panel.plots.curves["step_loss"].series.size == drawn
    assert panel.resume_button.isEnabled() and not panel.pause_button.isEnabled()

    qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.plots.curves["step_loss"].series.size > drawn, timeout=30_000)

    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.run is None, timeout=60_000)
    assert panel.last_state == "stopped"
    assert thread.isFinished() and not thread.isRunning()
    assert (panel.run_dir / "checkpoints" / "last.pt").is_file()
    assert panel.continue_button.isEnabled()
    assert window.tree_panel.linear_probe.isEnabled()
    assert dialogs.messages("critical") == []
    # The run trained a copy; the window adopted it: the workspace now holds the checkpoint's weights.
    import torch

    from workbench.training.checkpoint_file import load_checkpoint

    saved = load_checkpoint(panel.run_dir / "checkpoints" / "last.pt").model
    state = window.session.workspace.backbone.module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert window.session.weights_label.startswith(f"run {panel.run_dir.name}, last checkpoint after epoch 0")


@pytest.mark.slow
def test_closing_while_training_asks_then_stops_cleanly(window, wait_idle, qtbot, dialogs):
    start_demo_training(window, wait_idle, qtbot)
    panel = window.train_panel
    thread = panel.run._thread
    qtbot.waitUntil(lambda: panel.plots.curves["step_loss"].series.size >= 1, timeout=60_000)
    dialogs.answer = None  # "Yes" to "stop training and close?", "Discard" to unsaved changes
    window.close()
    assert any("Stop training" in m for m in dialogs.messages("question"))
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert thread.isFinished()
    assert panel.last_state == "stopped"
    assert (panel.run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("fmt, target", [("safetensors", "export"), ("torchscript", "model.pt")])
def test_export_from_the_dialog(window, qtbot, resnet18_workspace, tmp_path, fmt, target):
    window.session.set_workspace(resnet18_workspace)
    dialog = window.open_export()
    dialog.format.setCurrentIndex(dialog.format.findData(fmt))
    out = tmp_path / target
    dialog.path.setText(str(out))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.is_busy() and (dialog.result is not None or dialog.error), timeout=120_000)
    assert dialog.error is None, dialog.error
    assert dialog.result.format == fmt
    assert all(Path(p).exists() for p in dialog.result.paths)
    if fmt == "safetensors":
        assert (out / "model.safetensors").is_file()
        assert json.loads((out / "config.json").read_text())["architecture"] == "resnet18"
    else:
        assert out.is_file()
        assert "parity" in dialog.outcome.text()
    dialog.close()


@pytest.mark.slow
def test_head_is_rebuilt_for_the_data_before_training(window, wait_idle, qtbot, dialogs, resnet18_workspace):
    from workbench.workspace import Workspace

    window.session.set_workspace(Workspace.from_plan(resnet18_workspace.plan.copy()))  # own module: it trains
    window.session.plan.data.dataset = "digits"
    window.data_panel.sync_from_plan()
    wait_idle(window)
    assert window.session.workspace.backbone.spec.num_classes == 1000
    window.session.plan.train.num_workers = 0
    window.start_training()  # the fake dialog answers Yes to "replace the head?"
    assert any("10 classes" in m for m in dialogs.messages("question"))
    qtbot.waitUntil(lambda: window.train_panel.run is not None, timeout=60_000)
    assert window.session.workspace.backbone.spec.num_classes == 10
    assert window.session.plan.model.num_classes == 10 and window.session.dirty
    qtbot.waitUntil(lambda: window.train_panel.plots.curves["step_loss"].series.size >= 1, timeout=60_000)
    window.train_panel.stop()
    qtbot.waitUntil(lambda: window.train_panel.run is None, timeout=60_000)
    assert window.train_panel.last_state == "stopped"


@pytest.mark.slow
def test_training_error_reaches_a_dialog(window, wait_idle, qtbot, dialogs):
    window.open_demo()
    wait_idle(window)
    window.session.plan.train.device = "cuda:7"
    window.start_training()
    qtbot.waitUntil(lambda: window.train_panel.run is None, timeout=60_000)
    errors = dialogs.messages("critical")
    assert len(errors) == 1 and "cuda:7" in errors[0]
    assert window.train_panel.last_state == "failed"
    assert window.session.untrained  # a failed run leaves the workspace's model as it was
    assert window.train_panel.start_button.isEnabled()
