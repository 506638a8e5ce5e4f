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
    shown = panel.picture.pixmap().cacheKey()
    panel.layer.setCurrentText("nope")
    QTest.mouseClick(panel.heatmap, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.calls, timeout=60_000)
    assert any("no layer 'nope'" in m for m in dialogs.messages())
    panel.layer.setCurrentText("layer4")
    QTest.mouseClick(panel.heatmap, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.calls and panel.picture.pixmap().cacheKey() != shown, timeout=60_000)
    panel.wait()


def test_feature_visualisation_runs_with_progress_and_cancels(window, qtbot, resnet18_workspace) -> None:
    panel = window.look_panel
    window.session.set_workspace(resnet18_workspace)
    window.tabs.setCurrentWidget(panel)
    controls = panel.features
    panel.layer.setCurrentText("layer1")
    controls.channels.setText("0-1")
    controls.side.setValue(32)
    statuses: list[str] = []
    controls.progressed.connect(statuses.append)
    QTest.mouseClick(controls.start, Qt.MouseButton.LeftButton)
    assert not controls.start.isEnabled() and controls.cancel.isEnabled()
    qtbot.waitUntil(lambda: controls.call is None, timeout=120_000)
    assert panel.picture.pixmap() is not None and not panel.picture.pixmap().isNull()
    assert any("step" in s and "of 128" in s for s in statuses) or statuses[-1] == ""
    # Cancelled: a status saying where it stopped, no error dialog, the picture left as it was.
    shown = panel.picture.pixmap().cacheKey()
    QTest.mouseClick(controls.start, Qt.MouseButton.LeftButton)
    QTest.mouseClick(controls.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controls.call is None, timeout=120_000)
    assert "cancelled at step" in panel.status.text()
    assert panel.picture.pixmap().cacheKey() == shown and controls.start.isEnabled()
    # A bad channel list is one message, nothing started.
    messages: list[str] = []
    panel.failed.connect(lambda m, _d: messages.append(m))
    controls.channels.setText("3-x")
    QTest.mouseClick(controls.start, Qt.MouseButton.LeftButton)
    assert controls.call is None and messages == ["expected channel indices like 0,3,7 or 0-7, not '3-x'"]


def test_probe_by_depth_then_freeze_up_to_the_chosen_depth(window, qtbot, resnet18_workspace) -> None:
    panel = window.look_panel
    resnet18_workspace.plan.data.dataset = "digits"
    resnet18_workspace.plan.train.epochs = 1
    window.session.set_workspace(resnet18_workspace)
    window.tabs.setCurrentWidget(panel)
    choice = panel.depth_choice
    assert not choice.isVisible()
    QTest.mouseClick(panel.probe, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: choice.isVisible(), timeout=300_000)
    labels = [choice.depth.itemText(i) for i in range(choice.depth.count())]
    assert [r.path for r in choice.results][:4] == ["act1", "layer1", "layer2", "layer3"]
    assert "top-1" in labels[0] and "parameters kept" in labels[0]
    choice.depth.setCurrentIndex(2)  # layer2
    QTest.mouseClick(choice.freeze, Qt.MouseButton.LeftButton)
    tree, state = window.session.workspace.tree, window.session.resolution.node_state
    assert state[tree.node("layer2.1").index] == "frozen" and state[tree.node("conv1").index] == "frozen"
    assert state[tree.node("layer3.0").index] == "trainable"
    assert window.undo_action.text().replace("&", "") == "Undo Freeze everything up to layer2"
    window.undo_action.trigger()  # the Edit menu's item
    assert window.session.resolution.node_state[tree.node("layer2.1").index] == "trainable"
    # The classifier's input: "freeze up to here" is a linear probe, and there is nothing to cut.
    choice.depth.setCurrentIndex(choice.depth.count() - 1)
    assert not choice.cut.isEnabled()
    QTest.mouseClick(choice.freeze, Qt.MouseButton.LeftButton)
    state = window.session.resolution.node_state
    assert state[tree.node("layer4.1").index] == "frozen" and state[tree.node("fc").index] == "trainable"
    qtbot.waitUntil(lambda: not panel.calls, timeout=60_000)  # the graph redrawn with the new states


def test_drift_of_a_run_colours_the_graph(window, qtbot, resnet18_workspace) -> None:
    panel = window.look_panel
    window.session.set_workspace(resnet18_workspace)
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: "layer2.0" in panel.graph.boxes and not panel.calls, timeout=60_000)
    assert not panel.drift_overlay.isEnabled()
    tree = resnet18_workspace.tree
    drift = [0.0 if n.path.startswith("layer1") else (0.5 if n.path.startswith("layer4") else 0.05)
             for n in tree.nodes]
    panel.set_drift(drift)
    before = panel.graph.boxes["layer4.0"].brush().color().name()
    QTest.mouseClick(panel.drift_overlay, Qt.MouseButton.LeftButton)
    assert panel.drift_overlay.isChecked()
    colours = {p: panel.graph.boxes[p].brush().color() for p in ("layer1.0", "layer2.0", "layer4.0")}
    assert colours["layer1.0"].name() == "#ffffff"  # unchanged: white
    assert colours["layer4.0"].green() < colours["layer2.0"].green() < 255  # the most moved is the reddest
    texts = [t.text() for t in panel.graph._overlay_texts]
    assert "unchanged" in texts and "drift 0.5" in texts
    QTest.mouseClick(panel.drift_overlay, Qt.MouseButton.LeftButton)
    assert panel.graph.boxes["layer4.0"].brush().color().name() == before and not panel.graph._overlay_texts
