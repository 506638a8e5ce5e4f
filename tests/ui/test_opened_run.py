"""After Open run, everything rebuilt from the plan starts from the run's weights, and new runs land in runs/.

Open run (a real click on the Runs tab) → compare / cut / a new run / export: the starting tensors are
the run's, never the untrained ones the plan would build (it says pretrained = false). A new run is
written beside the project, listed by the Runs tab and by `workbench runs`. A cut rewrites the plan's
references to what it removed and Ctrl+Z brings the model back.
"""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from safetensors.torch import load_file

from tests.ui.test_runs_panel import open_project, project_with_runs  # noqa: F401  (a fixture)
from workbench.cli import main
from workbench.run_folder import RunDir

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def opened(window, project_with_runs, wait_idle, qtbot):  # noqa: F811
    panel = open_project(window, project_with_runs, wait_idle)
    panel.select(["a-finished"])
    qtbot.mouseClick(panel.open_button, LEFT)
    wait_idle(window)
    assert window.session.weights_label.startswith("run a-finished")
    run = project_with_runs.parent / "runs" / "a-finished"
    return window, run, load_file(str(RunDir(run).weights))


def same(state: dict, run_state: dict, names) -> None:
    names = list(names)
    assert names
    for name in names:
        assert torch.equal(state[name], run_state[name]), name


@pytest.mark.slow
def test_a_new_run_and_a_comparison_start_from_the_opened_runs_weights(opened, qtbot, wait_idle, capsys):
    window, run, run_state = opened
    runs = run.parent
    window.tabs.setCurrentWidget(window.train_panel)
    qtbot.keyClick(window.train_panel.epochs.lineEdit(), Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(window.train_panel.epochs.lineEdit(), "1")
    qtbot.keyClick(window.train_panel.epochs.lineEdit(), Qt.Key.Key_Return)
    qtbot.mouseClick(window.train_panel.start_button, LEFT)
    qtbot.waitUntil(lambda: window.train_panel.run is None and bool(window.train_panel.last_state), timeout=120_000)
    assert window.train_panel.last_state == "finished"
    new = window.train_panel.run_dir
    assert new is not None and new.parent == runs  # beside the project, not inside the opened run
    start = load_file(str(RunDir(new).start_weights))
    same(start, run_state, start)  # the trainable tensors started as the run left them
    final = load_file(str(RunDir(new).weights))
    same(final, run_state, [k for k in final if k.startswith(("conv1", "layer1"))])  # frozen: still the run's
    window.runs_panel.refresh()
    assert new.name in [r.name for r in window.runs_panel.runs]
    capsys.readouterr()
    assert main(["runs", str(runs.parent / "project.toml")]) == 0
    assert new.name in capsys.readouterr().out

    compare = window.compare_panel
    window.tabs.setCurrentWidget(compare)
    for i in range(compare.choices.count()):  # only "plan"
        item = compare.choices.item(i)
        want = item.data(Qt.ItemDataRole.UserRole) == "plan"
        if (item.checkState() == Qt.CheckState.Checked) != want:
            compare.choices.setCurrentRow(i)
            qtbot.keyClick(compare.choices, Qt.Key.Key_Space)
    assert compare.strategy_text() == "plan"
    qtbot.mouseClick(compare.start_button, LEFT)
    qtbot.waitUntil(lambda: compare.run is None, timeout=120_000)
    assert compare.status.text().startswith("finished: 1 strategies done"), compare.status.text()
    strategy_run = next(runs.glob("compare-*/plan"))
    start = load_file(str(RunDir(strategy_run).start_weights))
    # the workspace now holds the new run's weights (adopted when it finished): the comparison starts from them
    current = window.session.workspace.backbone.module.state_dict()
    same(start, current, start)
    assert not torch.equal(start["fc.weight"], torch.zeros_like(start["fc.weight"]))


@pytest.mark.slow
def test_cut_after_open_run_keeps_the_runs_trunk_rewrites_the_plan_and_undoes(opened, qtbot):
    window, run, run_state = opened
    session = window.session
    before = session.workspace
    before.plan.groups = []  # (default groups: nothing names the cut-off layers but [freeze])
    panel = window.tree_panel

    def fill() -> None:
        qtbot.keyClicks(panel.head_dialog.hidden, "16")
        qtbot.mouseClick(panel.head_dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), LEFT)

    QTimer.singleShot(0, fill)
    next(a for a in panel.build_context_menu("layer3").actions() if a.text().startswith("Cut here")).trigger()
    after = session.workspace
    assert after is not before and after.plan.head.cut == "layer3" and after.plan.head.hidden == [16]
    state = after.backbone.module.state_dict()
    same(state, run_state, [k for k in state if k.startswith(("conv1", "bn1", "layer1", "layer2", "layer3"))])
    assert not any(k.startswith(("layer4", "fc")) for k in state)
    assert after.plan.freeze.frozen == ["conv1", "bn1", "layer1", "layer2"]
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)  # shortcuts reach the active window
    qtbot.keyClick(panel.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert session.workspace is before and before.plan.head is None
    qtbot.keyClick(panel.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert session.workspace is after


@pytest.mark.slow
def test_export_after_open_run_writes_the_runs_weights(opened, qtbot, tmp_path):
    window, run, run_state = opened
    dialog = window.open_export()
    dialog.format.setCurrentIndex(dialog.format.findData("safetensors"))
    dialog.path.setText(str(tmp_path / "out"))
    qtbot.mouseClick(dialog.export_button, LEFT)
    qtbot.waitUntil(lambda: not dialog.is_busy() and (dialog.result is not None or dialog.error), timeout=120_000)
    assert dialog.error is None
    exported = load_file(str(tmp_path / "out" / "model.safetensors"))
    same(exported, run_state, run_state)
    dialog.close()


def test_a_cut_drops_references_to_removed_layers_with_a_notice(window, resnet18_workspace, qtbot):
    """The plan names layer4 and fc (the classifier): after a cut at layer3, fc becomes the new head, layer4 goes."""
    window.session.set_workspace(resnet18_workspace)
    plan = window.session.plan
    plan.freeze.frozen, plan.freeze.unfrozen = [""], ["layer4", "fc"]
    window.session.set_workspace(resnet18_workspace)
    panel = window.tree_panel

    def fill() -> None:
        qtbot.mouseClick(panel.head_dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), LEFT)

    QTimer.singleShot(0, fill)
    next(a for a in panel.build_context_menu("layer3").actions() if a.text().startswith("Cut here")).trigger()
    new_plan = window.session.plan
    assert new_plan.head is not None and new_plan.freeze.unfrozen == ["head"]
    assert any("layer4" in n for n in panel.cut_notices) and any("now names the new head" in n for n in panel.cut_notices)
    assert "layer4" in window.statusBar().currentMessage()
    assert window.session.resolution.trainable_params > 0  # the new head trains
