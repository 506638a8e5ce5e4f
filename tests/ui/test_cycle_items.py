"""Smaller things a user of the whole cycle sees: shortcuts, examples, axes, labels that say what is loaded."""

from __future__ import annotations

from PySide6.QtCore import Qt

from workbench.backbone import LoadRequest
from workbench.demo import DEMO_MODEL
from workbench.plan import FinetunePlan, ModelConfig
from workbench.sources import load_backbone
from workbench.workspace import Workspace
from workbench_ui.plots import IntegerAxis


def test_every_redo_key_is_bound_once(window):
    """On X11 the platform's Redo is Ctrl+Shift+Z: listed twice, Qt calls it ambiguous and does nothing."""
    keys = [k.toString() for k in window.redo_action.shortcuts()]
    assert "Ctrl+Shift+Z" in keys and len(keys) == len(set(keys))


def test_the_selector_suggests_a_type_the_loaded_model_has(window, qtbot):
    ws = Workspace.from_backbone(load_backbone(LoadRequest("test_efficientnet", input_size=(3, 32, 32))),
                                 FinetunePlan(model=ModelConfig(name="test_efficientnet")))
    window.session.set_workspace(ws)
    bar = window.tree_panel.selector_bar
    types = {n.type_name for n in ws.tree.nodes}
    assert "BatchNormAct2d" in types and "BatchNorm2d" not in types
    assert "type:BatchNormAct2d" in bar.selector.placeholderText()
    qtbot.keyClicks(bar.selector, "type:Batchnorm2d")
    qtbot.keyClick(bar.selector, Qt.Key.Key_Return)
    assert "BatchNormAct2d" in bar.count.text()  # the inline message suggests the right name


def test_epoch_axes_are_whole_numbers(window):
    for plot in (window.runs_panel.acc_plot, window.compare_panel.curves):
        assert isinstance(plot.getPlotItem().getAxis("bottom"), IntegerAxis)


def test_the_demo_is_described_as_what_it_loads(window):
    assert DEMO_MODEL in window.demo_action.toolTip() and "resnet18" not in window.demo_action.toolTip()


def test_the_pretrained_box_shows_the_loaded_models_weights(window, wait_idle):
    window.open_demo()
    wait_idle(window)
    assert window.session.workspace.backbone.spec.pretrained
    assert window.model_panel.pretrained.isChecked()
