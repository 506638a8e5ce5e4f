"""QtLayerTreeModel over a real timm model: structure, tri-state ticks, the plan behind them."""

from __future__ import annotations

from PySide6.QtCore import Qt

from workbench_ui.qt_layer_tree import GROUP, LR, NAME, TRAINABLE, QtLayerTreeModel
from workbench_ui.session import WorkbenchSession

CHECK = Qt.ItemDataRole.CheckStateRole


def make_model(workspace):
    session = WorkbenchSession()
    session.set_workspace(workspace)
    model = QtLayerTreeModel(workspace.tree, session.resolution, session.set_frozen)
    session.resolutionChanged.connect(lambda: model.set_resolution(session.resolution))
    return session, model


def test_model_passes_qtmodeltester(qtmodeltester, resnet18_workspace):
    _session, model = make_model(resnet18_workspace)
    qtmodeltester.check(model, force_py=True)


def test_untick_freezes_subtree_and_parents_become_partial(resnet18_workspace, qtbot):
    session, model = make_model(resnet18_workspace)
    layer1 = model.index_of_path("layer1")
    root = model.index_of(0)
    assert model.data(root, CHECK) == Qt.CheckState.Checked

    with qtbot.waitSignal(model.dataChanged):
        assert model.setData(layer1, Qt.CheckState.Unchecked.value, CHECK)

    assert session.plan.freeze.frozen == ["layer1"]
    assert model.data(layer1, CHECK) == Qt.CheckState.Unchecked
    assert model.data(model.index_of_path("layer1.0.conv1"), CHECK) == Qt.CheckState.Unchecked
    assert model.data(root, CHECK) == Qt.CheckState.PartiallyChecked
    assert model.data(model.index_of_path("layer2"), CHECK) == Qt.CheckState.Checked
    layer1_params = resnet18_workspace.tree.node("layer1").param_count
    assert session.resolution.trainable_params == session.resolution.total_params - layer1_params
    assert model.data(model.index_of_path("layer1", TRAINABLE)) == "frozen"
    assert model.data(layer1, Qt.ItemDataRole.FontRole).italic()

    # Tick one child back inside the frozen stage: the stage becomes partial.
    model.setData(model.index_of_path("layer1.1"), Qt.CheckState.Checked, CHECK)
    assert session.plan.freeze.unfrozen == ["layer1.1"]
    assert model.data(layer1, CHECK) == Qt.CheckState.PartiallyChecked

    # Ticking the partial stage makes the whole subtree trainable again, and the plan minimal.
    model.setData(layer1, Qt.CheckState.Checked, CHECK)
    assert session.plan.freeze.frozen == [] and session.plan.freeze.unfrozen == []
    assert model.data(root, CHECK) == Qt.CheckState.Checked
    assert session.resolution.trainable_params == session.resolution.total_params
    assert session.dirty


def test_tick_emits_datachanged_only_for_affected_rows(resnet18_workspace, qtbot):
    _session, model = make_model(resnet18_workspace)
    changed: list[int] = []
    model.dataChanged.connect(lambda top, bottom: changed.extend(
        model.index(r, 0, top.parent()).internalId() for r in range(top.row(), bottom.row() + 1)))
    model.setData(model.index_of_path("layer4.1.conv2"), Qt.CheckState.Unchecked, CHECK)
    tree = resnet18_workspace.tree
    paths = {tree.nodes[i].path for i in changed}
    assert paths == {"", "layer4", "layer4.1", "layer4.1.conv2"}


def test_group_and_lr_columns(resnet18_workspace):
    _session, model = make_model(resnet18_workspace)
    fc = model.index_of_path("fc", GROUP)
    assert model.data(fc) == "head"
    assert model.data(model.index_of_path("fc", LR)) == "0.001"
    assert model.data(model.index_of_path("layer1", NAME)) == "layer1"
