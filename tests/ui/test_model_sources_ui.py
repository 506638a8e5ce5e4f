"""A third-party model source that takes files shows up in the window's open dialogs and loads, with no GUI edit."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from tests.plugin_fixtures import fakenet_plugin, write_fakenet  # noqa: F401  (fixture)


def test_a_third_party_suffix_is_in_the_open_dialog_filter_and_its_file_loads(fakenet_plugin, window, qtbot,  # noqa: F811
                                                                               wait_idle, dialogs, monkeypatch,
                                                                               tmp_path):
    net = write_fakenet(tmp_path / "net.fakenet")
    asked: list[str] = []

    def fake_open(parent, caption, folder, file_filter):
        asked.append(file_filter)
        return str(net), file_filter.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_open))
    window.start_background_init()
    wait_idle(window)
    assert ".fakenet" in window.model_panel.open_file.toolTip()

    qtbot.mouseClick(window.model_panel.open_file, Qt.MouseButton.LeftButton)
    wait_idle(window)
    entries = asked[-1].split(";;")
    every = entries[0]
    assert every.startswith("Model files (") and all(s in every for s in ("*.fakenet", "*.onnx", "*.safetensors"))
    assert "FakeNet models (*.fakenet)" in entries and "ONNX models (*.onnx)" in entries
    assert dialogs.messages("critical") == []
    ws = window.session.workspace
    assert ws is not None and ws.backbone.source == ws.plan.model.source == "fakenet"
    assert ws.backbone.spec.architecture == "fakenet:net" and ws.backbone.weights == "weights from net.fakenet"

    window.open_model_action.trigger()  # the File menu asks with the same filter
    wait_idle(window)
    assert asked[-1] == asked[0] and len(asked) == 2
