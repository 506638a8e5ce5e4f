"""A third-party plugin appears in the window without any GUI edit: export dialog, file opening, the log."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.plugin_fixtures import third_party_plugins  # noqa: F401  (fixture)


@pytest.mark.slow
def test_third_party_exporter_is_listed_and_exports(third_party_plugins, window, qtbot, resnet18_workspace,  # noqa: F811
                                                   tmp_path):
    window.session.set_workspace(resnet18_workspace)
    dialog = window.open_export()
    labels = [dialog.format.itemText(i) for i in range(dialog.format.count())]
    keys = [dialog.format.itemData(i) for i in range(dialog.format.count())]
    assert {"safetensors", "torchscript", "onnx", "fakenpz"} <= set(keys)
    assert "fakenpz: NumPy archive of every tensor (third-party test exporter)" in labels
    assert dialog.format.currentData() == "safetensors"

    dialog.format.setCurrentIndex(dialog.format.findData("fakenpz"))
    assert dialog.path.text().endswith("resnet18.npz")  # the suffix the exporter declares
    out = tmp_path / "weights.npz"
    dialog.path.setText(str(out))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.is_busy() and (dialog.result is not None or dialog.error), timeout=120_000)
    assert dialog.error is None, dialog.error
    assert dialog.result.format == "fakenpz"
    assert np.load(out)["fc.weight"].shape == (1000, 512)
    dialog.close()


def test_third_party_source_opens_its_files_and_failures_reach_the_log(third_party_plugins, window,  # noqa: F811
                                                                      wait_idle, dialogs, tmp_path):
    window.start_background_init()
    wait_idle(window)
    log = [window.train_panel.log.item(i).text() for i in range(window.train_panel.log.count())]
    assert any("plugin 'broken'" in line and "ModuleNotFoundError" in line for line in log), log

    alias = tmp_path / "model.timmname"
    alias.write_text("resnet18\n")
    window.open_path(str(alias))
    wait_idle(window)
    assert dialogs.messages("critical") == []
    ws = window.session.workspace
    assert ws is not None and ws.backbone.spec.architecture == "resnet18"

    note = tmp_path / "model.timmnote"
    note.write_text("resnet18\n")
    window.open_path(str(note))
    wait_idle(window)
    assert "Alias file: resolved to resnet18" in window.tree_panel.info.text()

    unknown = tmp_path / "model.xyz"
    unknown.write_text("?")
    window.open_path(str(unknown))
    assert ".timmname" in dialogs.messages("critical")[-1]
