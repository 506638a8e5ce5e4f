"""The "Look inside" tab: the graph follows the tree and the reverse, freezing from the graph, pictures drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest


def click_box(view, path: str) -> None:
    box = view.boxes[path]
    point = view.mapFromScene(box.sceneBoundingRect().center())
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)


def test_graph_and_tree_select_each_other_and_freeze(window, qtbot, resnet18_workspace) -> None:
    panel = window.look_panel
    window.session.set_workspace(resnet18_workspace)
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: "layer2.0" in panel.graph.boxes, timeout=60_000)
    assert "8 skip connections" in panel.graph_note.text()
    panel.graph.centerOn(panel.graph.boxes["layer2.0"])
    click_box(panel.graph, "layer2.0")
    tree = window.tree_panel
    assert tree.path_at(tree.view.currentIndex()) == "layer2.0"
    assert panel.layer.currentText() == "layer2.0"
    # A click on a tree row outlines the block that holds it.
    window.tabs.setCurrentWidget(tree)
    index = tree.model.index_of_path("layer3.1.conv1")
    tree.view.scrollTo(index)
    QTest.mouseClick(tree.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     tree.view.visualRect(index).center())
    assert panel.graph._selected == "layer3.1"
    # Freezing from the graph's menu (the graph in view) goes through the session: the tree and the colours follow.
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: not panel.calls, timeout=60_000)
    assert panel.graph.boxes["layer1.0"].brush().color().name() == "#fdae6b"  # trainable
    panel.graph.freezeRequested.emit("layer1", True)
    node = window.session.workspace.tree.node("layer1.0")
    assert window.session.resolution.node_state[node.index] == "frozen"
    qtbot.waitUntil(lambda: panel.graph.boxes["layer1.0"].brush().color().name() == "#9ecae1", timeout=60_000)
    panel.wait()


def test_activation_maps_and_heatmap_are_drawn(window, qtbot, resnet18_workspace, tmp_path: Path, dialogs) -> None:
    panel = window.look_panel
    window.session.set_workspace(resnet18_workspace)
    window.tabs.setCurrentWidget(panel)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(image)
    panel.set_image(image)
    panel.layer.setCurrentText("layer2")
    QTest.mouseClick(panel.activations, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.picture.pixmap() is not None and not panel.picture.pixmap().isNull(),
                    timeout=60_000)
    width = panel.picture.pixmap().width()
    panel.layer.setCurrentText("nope")
    QTest.mouseClick(panel.heatmap, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.calls, timeout=60_000)
    assert any("no layer 'nope'" in m for m in dialogs.messages())
    panel.layer.setCurrentText("layer4")
    QTest.mouseClick(panel.heatmap, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.calls and panel.picture.pixmap().width() != width, timeout=60_000)
    panel.wait()
