"""The Compare tab and the cost line, driven through the real widgets."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from tests.test_cli_train import write_image_folder
from workbench.backbone import LoadRequest
from workbench.plan import DataConfig, FinetunePlan, ModelConfig, TrainConfig
from workbench.sources import load_backbone
from workbench.workspace import Workspace
from workbench_ui.qt_layer_tree import DRIFT


def test_summary_bar_cost_updates_when_a_box_is_ticked(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    bar = window.summary_bar
    assert "1.00× the step cost and 1.00× the optimizer memory" in bar.cost.text()

    qtbot.mouseClick(window.tree_panel.linear_probe, Qt.MouseButton.LeftButton)
    probe_text = bar.cost.text()
    assert "1.00× the step cost" not in probe_text and "with the feature cache, epochs 2+" in probe_text

    qtbot.mouseClick(window.tree_panel.full_finetune, Qt.MouseButton.LeftButton)
    view, model = window.tree_panel.view, window.tree_panel.model
    rect = view.visualRect(model.index_of_path("fc"))
    x = rect.left() + view.style().pixelMetric(view.style().PixelMetric.PM_IndicatorWidth) // 2 + 4
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, rect.center().y()))
    assert window.session.plan.freeze.frozen == ["fc"]
    # fc frozen: its 2 x weights of optimizer state disappear, so the memory ratio drops below 1.
    assert "1.00× the optimizer memory" not in bar.cost.text()


def _workspace(tmp_path, epochs: int) -> Workspace:
    write_image_folder(tmp_path / "data", per_class=4)
    plan = FinetunePlan(model=ModelConfig(source="timm", name="resnet18", num_classes=3, input_size=(3, 32, 32)),
                        data=DataConfig(path=str(tmp_path / "data"), val_split=0.25),
                        train=TrainConfig(epochs=epochs, batch_size=3, num_workers=0, augment=False))
    plan.base_dir = tmp_path
    backbone = load_backbone(LoadRequest("resnet18", num_classes=3, input_size=(3, 32, 32)))
    return Workspace.from_backbone(backbone, plan)


def _check_only(panel, keys: set[str]) -> None:
    for i in range(panel.choices.count()):
        item = panel.choices.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in keys
                           else Qt.CheckState.Unchecked)


@pytest.mark.slow
def test_compare_tab_runs_sorts_shows_drift_and_uses_a_plan(window, qtbot, tmp_path):
    window.session.set_workspace(_workspace(tmp_path, epochs=1))
    panel = window.compare_panel
    window.tabs.setCurrentWidget(panel)
    _check_only(panel, {"probe", "freeze"})
    panel.freeze_n.setValue(1)
    assert panel.strategy_text() == "probe,freeze:1"
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.run is not None and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: panel.run is None, timeout=300_000)

    assert panel.status.text().startswith("finished: 2 strategies done")
    table = panel.table
    names = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert set(names) == {"probe", "freeze:1"}
    assert all(table.item(r, 1).text() == "done" for r in range(table.rowCount()))
    # Sort by trainable parameters, descending then ascending, with a click on the header.
    header = table.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(header.sectionViewportPosition(8) + 5, header.height() // 2))
    first = table.item(0, 0).text()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(header.sectionViewportPosition(8) + 5, header.height() // 2))
    assert {first, table.item(0, 0).text()} == {"probe", "freeze:1"} and first != table.item(0, 0).text()
    assert len(panel.charts.curve_items) == 2  # overlaid curves, one per strategy

    # Select the probe row: drift bars, and the tree's Drift column shows frozen layers at exactly 0.
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "probe")
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=table.visualItemRect(table.item(row, 0)).center())
    tree_model = window.tree_panel.model
    assert tree_model.data(tree_model.index_of_path("layer1", DRIFT)) == "0"
    assert float(tree_model.data(tree_model.index_of_path("fc", DRIFT))) > 0
    assert "unchanged)" in panel.drift_plot.getPlotItem().titleLabel.text  # frozen modules: drift exactly 0
    assert "exactly unchanged" in panel.drift_plot.toolTip()

    qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    assert window.session.plan.freeze.frozen == [""] and window.session.plan.freeze.unfrozen == ["fc"]
    assert window.session.dirty


@pytest.mark.slow
def test_compare_tab_stop_ends_the_run(window, qtbot, tmp_path):
    window.session.set_workspace(_workspace(tmp_path, epochs=50))
    panel = window.compare_panel
    _check_only(panel, {"full", "probe"})
    panel.epochs.setValue(50)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.table.rowCount() >= 1 and panel.table.item(0, 1) is not None
                    and panel.table.item(0, 1).text().startswith("epoch"), timeout=300_000)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.run is None, timeout=300_000)
    assert panel.status.text().startswith("stopped")
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
