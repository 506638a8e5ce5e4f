"""The Export dialog writes an INT8 ONNX file of a run and shows the report that proves it."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from tests.test_cli_train import write_project
from workbench.cli import main

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    assert main(["train", str(write_project(root, epochs=2)), "--out", str(root / "run")]) == 0
    return root / "run"


def _export(dialog, qtbot):
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.is_busy() and bool(dialog.result or dialog.error), timeout=180_000)


def test_int8_export_from_the_dialog_shows_the_report(window, trained_run, qtbot, tmp_path):
    dialog = window.export_run(trained_run)
    assert not dialog.onnx_box.isVisible()  # the ONNX variant is offered for ONNX only
    dialog.format.setCurrentIndex(dialog.format.findData("onnx"))
    assert dialog.onnx_box.isVisible() and not dialog.calibration.isEnabled()
    dialog.quantize.setCurrentIndex(dialog.quantize.findData("int8"))
    assert dialog.calibration.isEnabled() and not dialog.keep_io.isEnabled()
    qtbot.mouseClick(dialog.with_preprocessing, Qt.MouseButton.LeftButton)
    out = tmp_path / "model.onnx"
    dialog.path.setText(str(out))
    _export(dialog, qtbot)
    assert dialog.error is None, dialog.error
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["variant"] == "int8, with preprocessing"
    table = dialog.report
    assert table.isVisible() and table.rowCount() == 3
    assert [table.item(r, 0).text() for r in range(3)] == [
        "PyTorch (eager) (reference)", "ONNX fp32 (reference)", "ONNX int8 (static QDQ) + preprocessing"]
    int8 = report["rows"][2]
    assert table.item(2, 1).text() == f"{int8['top1']:.2%}" and table.item(2, 2).text() == f"{int8['agreement']:.1%}"
    assert "6 validation images" in dialog.report_notes.text() and "calibrated on 18 of 18" in dialog.report_notes.text()
    assert out.is_file() and str(tmp_path / "export_report.json") in dialog.details.toPlainText()
    dialog.close()


def test_dialog_export_error_is_shown_and_nothing_written(window, trained_run, qtbot, tmp_path):
    dialog = window.export_run(trained_run)
    dialog.format.setCurrentIndex(dialog.format.findData("onnx"))
    (tmp_path / "export_report.json").write_text("{}")  # someone else's file of that name
    dialog.path.setText(str(tmp_path / "model.onnx"))
    _export(dialog, qtbot)
    assert dialog.result is None and "is not an export report written by the workbench" in dialog.outcome.text()
    assert not (tmp_path / "model.onnx").exists() and not dialog.report.isVisible()
    dialog.close()


def test_refused_fp16_export_shows_its_figures(qtbot, tmp_path):
    """No validation images (a model loaded alone): fp16 cannot be checked, is refused, and the table says why."""
    import timm

    from workbench.spec import ModelSpec
    from workbench_ui.export_dialog import ExportDialog

    module = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    dialog = ExportDialog(module, ModelSpec("resnet10t", 3, (3, 16, 16)), None, tmp_path, plan=None)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.format.setCurrentIndex(dialog.format.findData("onnx"))
    dialog.precision.setCurrentIndex(dialog.precision.findData("fp16"))
    assert dialog.keep_io.isEnabled() and not dialog.calibration.isEnabled()
    dialog.path.setText(str(tmp_path / "half.onnx"))
    _export(dialog, qtbot)
    assert dialog.result is None and "refusing the fp16 export" in dialog.outcome.text()
    assert dialog.report.isVisible() and dialog.report.rowCount() == 3
    assert dialog.report.item(2, 1).text() == "—"  # no labels: no top-1, agreement only
    assert dialog.report.item(2, 2).text().endswith("%")
    assert "64 synthetic inputs" in dialog.report_notes.text() and "Nothing written." in dialog.report_notes.text()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    dialog.close()
