"""UI test fixtures: offscreen Qt, small models, and dialogs that never block."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest

from workbench.backbone import LoadRequest
from workbench.plan import FinetunePlan, ModelConfig
from workbench.sources import load_backbone
from workbench.workspace import Workspace


@pytest.fixture(autouse=True)
def _collect_qt_garbage():
    """Collect each test's cyclic garbage on the GUI thread, after pytest-qt has closed its widgets.

    Trap: otherwise a later test's worker thread may run the garbage collector (any allocation can),
    destroying Qt objects of an earlier test off the GUI thread while holding the GIL; seen as a
    rare hang of a data scan that imports scikit-learn in the background.
    """
    yield
    import gc

    gc.collect()


@pytest.fixture(scope="session")
def resnet18_backbone():
    return load_backbone(LoadRequest("resnet18", source="timm", input_size=(3, 64, 64)))


@pytest.fixture
def resnet18_workspace(resnet18_backbone) -> Workspace:
    plan = FinetunePlan(model=ModelConfig(source="timm", name="resnet18", input_size=(3, 64, 64)))
    return Workspace.from_backbone(resnet18_backbone, plan)


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    import torch
    import torch.nn as nn

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    ).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


class DialogRecorder:
    """Stands in for QMessageBox's static functions: records each call, answers without blocking."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.answer = None

    def messages(self, kind: str | None = None) -> list[str]:
        return [text for k, _title, text in self.calls if kind is None or k == kind]


@pytest.fixture
def dialogs(monkeypatch) -> DialogRecorder:
    from PySide6.QtWidgets import QMessageBox

    recorder = DialogRecorder()

    def make(kind: str, default):
        def fake(parent, title, text, *args, **kwargs):
            recorder.calls.append((kind, title, text))
            return recorder.answer if recorder.answer is not None else default
        return fake

    monkeypatch.setattr(QMessageBox, "critical", make("critical", QMessageBox.StandardButton.Ok))
    # The unsaved-changes prompt is a warning: by default tests discard.
    monkeypatch.setattr(QMessageBox, "warning", make("warning", QMessageBox.StandardButton.Discard))
    monkeypatch.setattr(QMessageBox, "information", make("information", QMessageBox.StandardButton.Ok))
    monkeypatch.setattr(QMessageBox, "question", make("question", QMessageBox.StandardButton.Yes))
    return recorder


@pytest.fixture
def window(qtbot, tmp_path, dialogs):
    from PySide6.QtCore import QSettings

    from workbench_ui.main_window import MainWindow

    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), runs_root=tmp_path / "runs")
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.train_panel.run is not None:
        win.train_panel.stop()
        win.train_panel.wait()
    for call in list(win.calls):
        call.wait()
    win.data_panel.wait()
    win.results_panel.wait()  # an evaluation started after a run must not outlive the test


@pytest.fixture
def wait_idle(qtbot):
    """Wait until the window has no background load or data scan running."""

    def wait(win, timeout: int = 60_000) -> None:
        qtbot.waitUntil(lambda: not win.is_busy() and not win.data_panel.is_scanning(), timeout=timeout)

    return wait
