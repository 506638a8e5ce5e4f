"""Right-click → "Adapt with LoRA…": the module gets a peft adapter, shown in the tree, undoable."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox


def test_adapt_with_lora_from_the_tree_is_one_undoable_step(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    panel = window.tree_panel
    bn = next(a for a in panel.build_context_menu("layer4.0.bn1").actions() if a.text() == "Adapt with LoRA…")
    assert not bn.isEnabled()  # peft cannot adapt a BatchNorm
    action = next(a for a in panel.build_context_menu("layer4.0.downsample.0").actions()
                  if a.text() == "Adapt with LoRA…")
    assert action.isEnabled()

    def drive() -> None:
        dialog = panel.lora_dialog
        assert dialog.rank.maximum() == 256  # a 1×1 convolution 256 -> 512 takes rank <= 256
        dialog.rank.selectAll()
        qtbot.keyClicks(dialog.rank, "4")
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, drive)
    action.trigger()
    ws = window.session.workspace
    assert ws.plan.adapters is not None and ws.plan.adapters.modules == ["layer4.0.downsample.0"]
    assert ws.plan.adapters.rank == 4 and ws.tree.adapter_paths == ["layer4.0.downsample.0"]
    model = panel.model
    row = model.index_of_path("layer4.0.downsample.0", 1)
    assert model.data(row, Qt.ItemDataRole.DisplayRole).startswith("LoRA ")
    assert model.index_of_path("layer4.0.downsample.0.lora_A.default", 0).isValid()
    trains = {p.name for p in ws.tree.params if window.session.resolution.param_trainable[p.index]}
    assert "layer4.0.downsample.0.lora_B.default.weight" in trains
    assert "layer4.0.downsample.0.base_layer.weight" not in trains
    window.session.undo_stack.undo()
    assert window.session.workspace.plan.adapters is None and not window.session.workspace.tree.adapter_paths
    assert panel.model.tree.find_node("layer4.0.downsample.0.lora_A.default") is None  # the view shows the plain model
    window.session.undo_stack.redo()
    assert window.session.workspace.tree.adapter_paths == ["layer4.0.downsample.0"]
