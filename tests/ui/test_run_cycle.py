"""The window's whole cycle, driven as a user drives it (mouse and keys on the real widgets, offscreen).

open the demo → save it as a project → Start → Stop → close → reopen the project → the Runs tab lists
the run as stopped → Continue → it finishes → the Results tab's accuracy is the run's → Compare three
strategies for one epoch (all finish, none at chance, the table sorts) → Use this plan → a second
comparison stops on Stop → Cut here at a block with a hidden layer (undoable) → train one epoch →
Export in all three formats → each file, loaded by timm-style rebuild / onnxruntime / torch.jit,
predicts five validation images as the run's weights do → every run made on the way is listed by the
Runs tab and by `workbench runs`.

The demo itself (EfficientNet-Lite0, digits at 48 px) runs here: a demo run is ~20 s on 2 cores.
Mixed precision is switched off on the Training tab first: the Results tab evaluates the float32
weights, and under bfloat16 the run's own validation may differ by an image (the Results tab then says
why; tests/ui/test_cycle_items.py checks that note).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox

from workbench.run_catalog import read_run

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process

CTRL = Qt.KeyboardModifier.ControlModifier
LEFT = Qt.MouseButton.LeftButton


def make_window(qtbot, tmp_path: Path):
    from workbench_ui.main_window import MainWindow

    win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     runs_root=tmp_path / "app-runs")
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    activate(qtbot, win)
    return win


def activate(qtbot, win) -> None:
    """Shortcuts reach the active window only."""
    from PySide6.QtWidgets import QApplication

    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)


def press(qtbot, win, key: Qt.Key, modifiers: Qt.KeyboardModifier = CTRL) -> None:
    """A shortcut as the user types it, in the active window."""
    activate(qtbot, win)
    qtbot.keyClick(win.tree_panel.view, key, modifiers)


def snap(win, name: str) -> None:
    """With WORKBENCH_SCREENSHOTS=DIR (run under xvfb-run at 1440×900), each step's window as DIR/NAME.png."""
    import os

    folder = os.environ.get("WORKBENCH_SCREENSHOTS")
    if folder:
        from PySide6.QtWidgets import QApplication

        for _ in range(3):
            QApplication.processEvents()
        Path(folder).mkdir(parents=True, exist_ok=True)
        win.grab().save(str(Path(folder) / f"{name}.png"))


def idle(qtbot, win, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not win.is_busy() and not win.data_panel.is_scanning(), timeout=timeout)


def click(qtbot, widget) -> None:
    assert widget.isEnabled(), f"{widget.text() if hasattr(widget, 'text') else widget} is disabled"
    qtbot.mouseClick(widget, LEFT)


def click_tab(qtbot, win, panel) -> None:
    bar = win.tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(win.tabs.indexOf(panel)).center())
    assert win.tabs.currentWidget() is panel


def click_toolbar(qtbot, win, action) -> None:
    from PySide6.QtWidgets import QToolBar

    toolbar = win.findChild(QToolBar, "mainToolbar")
    qtbot.mouseClick(toolbar.widgetForAction(action), LEFT)


def type_into(qtbot, box, text: str) -> None:
    """Select what the box shows, type ``text``, press Enter."""
    edit = box.lineEdit() if hasattr(box, "lineEdit") else box
    qtbot.keyClick(edit, Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def click_row(qtbot, table, text: str, column: int = 0) -> None:
    row = next(r for r in range(table.rowCount()) if table.item(r, column).text() == text)
    table.scrollToItem(table.item(row, column))
    qtbot.mouseClick(table.viewport(), LEFT, pos=table.visualItemRect(table.item(row, column)).center())


def column(table, title: str) -> list[str]:
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    c = headers.index(title)
    return [table.item(r, c).text() for r in range(table.rowCount())]


def train_until_done(qtbot, win, timeout: int = 240_000) -> str:
    qtbot.waitUntil(lambda: win.train_panel.run is None, timeout=timeout)
    idle(qtbot, win)
    return win.train_panel.last_state


def five_val_images(run_dir: Path):
    import torch

    from workbench.data import open_data
    from workbench.run_loading import load_run

    trained = load_run(run_dir)
    data = open_data(trained.plan.data, trained.plan.base_dir, trained.spec, augment=False)
    assert data.val is not None
    batch = torch.stack([data.val[i][0] for i in range(5)])
    with torch.no_grad():
        expected = trained.module.eval()(batch).float()
    return batch, expected


@pytest.mark.timeout(600)
def test_the_whole_cycle_of_a_demo_project(qtbot, tmp_path, dialogs, monkeypatch, capsys):
    import numpy as np
    import torch
    from PySide6.QtWidgets import QFileDialog

    project = tmp_path / "project" / "demo.toml"
    project.parent.mkdir()
    runs = project.parent / "runs"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(project), PROJECT_FILTER))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(project), PROJECT_FILTER))

    # -- open the demo, keep it as a project, switch mixed precision off, Start, Stop, close -------------
    win = make_window(qtbot, tmp_path)
    click_toolbar(qtbot, win, win.demo_action)
    idle(qtbot, win)
    assert win.session.workspace is not None and win.model_panel.pretrained.isChecked()
    press(qtbot, win, Qt.Key.Key_S)  # Save: the (patched) file dialog answers demo.toml
    assert project.is_file() and not win.session.dirty
    snap(win, "01-demo-opened")
    click_tab(qtbot, win, win.train_panel)
    win.train_panel.amp.setFocus()
    qtbot.keyClick(win.train_panel.amp, Qt.Key.Key_End)  # the last choice: off (float32)
    assert win.session.plan.train.amp == "off"
    press(qtbot, win, Qt.Key.Key_S)
    click(qtbot, win.train_panel.start_button)
    qtbot.waitUntil(lambda: win.train_panel.plots.curves["step_loss"].series.size >= 3, timeout=120_000)
    assert win.train_panel.eta.text() == "estimating…"  # epoch 1 fills the feature cache: later epochs cost otherwise
    snap(win, "02-training")
    click(qtbot, win.train_panel.stop_button)
    assert train_until_done(qtbot, win) == "stopped"
    first = win.train_panel.run_dir
    assert first is not None and first.parent == runs
    win.close()
    assert not win.isVisible()

    # -- reopen: the Runs tab lists the stopped run; Continue; it finishes -----------------------------
    win = make_window(qtbot, tmp_path)
    press(qtbot, win, Qt.Key.Key_O)
    idle(qtbot, win)
    assert win.session.project_path == project
    click_tab(qtbot, win, win.runs_panel)
    table = win.runs_panel.table
    assert column(table, "Run") == [first.name] and column(table, "Status") == ["stopped"]
    click_row(qtbot, table, first.name)
    snap(win, "03-runs-stopped")
    click(qtbot, win.runs_panel.continue_button)
    qtbot.waitUntil(lambda: win.train_panel.run is not None, timeout=120_000)
    assert train_until_done(qtbot, win) == "finished"
    continued = read_run(first)
    assert continued.status == "finished" and continued.epochs_done == continued.epochs_total == 4
    assert "untrained statistics" not in win.summary_bar.warnings.full_text()
    assert not any(p.code == "batchnorm-frozen-untrained" for p in win.session.problems)

    # -- the Results tab shows the run's accuracy ----------------------------------------------------
    qtbot.waitUntil(lambda: win.results_panel.evaluation is not None and not win.results_panel.is_busy(),
                    timeout=120_000)
    click_tab(qtbot, win, win.results_panel)
    evaluation = win.results_panel.evaluation
    assert evaluation.correct == round(continued.last_val_accuracy * evaluation.total)
    assert f"{continued.last_val_accuracy:.1%}" in win.results_panel.summary.text()
    snap(win, "04-results")
    click_tab(qtbot, win, win.runs_panel)
    click_row(qtbot, win.runs_panel.table, first.name)
    assert column(win.runs_panel.table, "Status") == ["finished"]
    snap(win, "05-runs-after-continue")

    # -- Compare three strategies for one epoch, from the run's weights --------------------------------
    compare = win.compare_panel
    click_tab(qtbot, win, compare)
    wanted = {"probe", "freeze", "gradual"}
    for i in range(compare.choices.count()):
        item = compare.choices.item(i)
        checked = item.checkState() == Qt.CheckState.Checked
        if checked != (item.data(Qt.ItemDataRole.UserRole) in wanted):
            compare.choices.setCurrentRow(i)
            qtbot.keyClick(compare.choices, Qt.Key.Key_Space)  # toggles the check box of the current row
    assert compare.strategy_text().split(",")[0] == "probe" and len(compare.strategy_text().split(",")) == 3
    type_into(qtbot, compare.freeze_n, str(compare.freeze_n.maximum()))  # all but the last stage frozen
    type_into(qtbot, compare.epochs, "1")
    click(qtbot, compare.start_button)
    qtbot.waitUntil(lambda: compare.run is None, timeout=300_000)
    assert compare.status.text().startswith("finished: 3 strategies done"), compare.status.text()
    best = dict(zip(column(compare.table, "Strategy"), [float(v) for v in column(compare.table, "Val top-1 %")]))
    assert len(best) == 3 and min(best.values()) > 50, best  # chance is 10%: every strategy starts from the run's weights
    header = compare.table.horizontalHeader()
    val_col = [compare.table.horizontalHeaderItem(c).text() for c in range(compare.table.columnCount())].index(
        "Val top-1 %")
    for _ in range(2):  # a click sorts; a second click reverses
        qtbot.mouseClick(header.viewport(), LEFT, pos=_section_center(header, val_col))
        shown = [float(v) for v in column(compare.table, "Val top-1 %")]
        assert shown in (sorted(shown), sorted(shown, reverse=True))
    assert compare.table.isSortingEnabled() and header.sortIndicatorSection() == val_col
    click_row(qtbot, compare.table, "gradual")
    snap(win, "06-compare-three-strategies")
    click_row(qtbot, compare.table, "probe")
    click(qtbot, compare.use_button)
    assert compare.status.text() == "the project now uses the probe plan"
    assert win.session.plan.train.epochs == 1

    # -- a second comparison stops on Stop --------------------------------------------------------------
    click(qtbot, compare.start_button)
    qtbot.waitUntil(lambda: compare.table.rowCount() >= 1, timeout=120_000)
    click(qtbot, compare.stop_button)
    qtbot.waitUntil(lambda: compare.run is None, timeout=120_000)
    assert compare.status.text().startswith("stopped:"), compare.status.text()

    # -- Cut here at a block, with a hidden layer; undo and redo it ------------------------------------
    click_tab(qtbot, win, win.tree_panel)
    before = win.session.workspace
    run_state = {k: v.clone() for k, v in before.backbone.module.state_dict().items()}

    def fill_head_dialog() -> None:
        dialog = win.tree_panel.head_dialog
        qtbot.keyClicks(dialog.hidden, "32")
        ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, LEFT)

    QTimer.singleShot(0, fill_head_dialog)
    cut = next(a for a in win.tree_panel.build_context_menu("blocks.5").actions() if a.text().startswith("Cut here"))
    cut.trigger()
    after = win.session.workspace
    assert after is not before and after.plan.head is not None and after.plan.head.hidden == [32]
    assert "head" in after.plan.freeze.unfrozen and "classifier" not in after.plan.freeze.unfrozen
    assert win.tree_panel.cut_notices and "Cut at blocks.5" in win.statusBar().currentMessage()
    new_state = after.backbone.module.state_dict()
    for name, tensor in run_state.items():  # the trunk starts from the run's weights, not the pretrained ones
        if name in new_state and name.startswith(("conv_stem", "bn1", "blocks.0", "blocks.5")):
            assert torch.equal(new_state[name], tensor), name
    press(qtbot, win, Qt.Key.Key_Z)
    assert win.session.workspace is before and before.plan.head is None
    press(qtbot, win, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert win.session.workspace is after
    snap(win, "07-cut")

    # -- train the cut model for one epoch ---------------------------------------------------------------
    click_tab(qtbot, win, win.train_panel)
    assert win.train_panel.epochs.value() == 1
    click(qtbot, win.train_panel.start_button)
    assert train_until_done(qtbot, win) == "finished"
    cut_run = win.train_panel.run_dir
    assert cut_run is not None and cut_run.parent == runs and read_run(cut_run).status == "finished"

    # -- Export in all three formats; each file predicts as the run's weights do ----------------------
    batch, expected = five_val_images(cut_run)
    out = tmp_path / "exports"
    outputs = {}
    for fmt in ("onnx", "safetensors", "torchscript"):
        press(qtbot, win, Qt.Key.Key_E)
        dialog = win.export_dialog
        qtbot.waitExposed(dialog)
        dialog.format.setFocus()
        qtbot.keyClick(dialog.format, Qt.Key.Key_Home)
        while dialog.fmt()[0] != fmt:
            qtbot.keyClick(dialog.format, Qt.Key.Key_Down)
        target = out / (f"{fmt}-export" if dialog.fmt()[1] else f"model{dialog.fmt()[2]}")
        qtbot.keyClick(dialog.path, Qt.Key.Key_A, CTRL)
        qtbot.keyClicks(dialog.path, str(target))
        click(qtbot, dialog.export_button)

        qtbot.waitUntil(lambda d=dialog: not d.is_busy() and (d.result is not None or d.error), timeout=180_000)
        assert dialog.error is None and "Exported" in dialog.outcome.text(), dialog.outcome.text()
        snap(dialog, f"08-export-{fmt}")
        outputs[fmt] = target
        dialog.close()
    import onnxruntime as ort

    session = ort.InferenceSession(str(outputs["onnx"]), providers=["CPUExecutionProvider"])
    by_onnx = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0])
    by_jit = torch.jit.load(str(outputs["torchscript"])).eval()(batch).float()
    from workbench.surgery import rebuild_from_config

    rebuilt = rebuild_from_config(outputs["safetensors"]).eval()
    with torch.no_grad():
        by_safetensors = rebuilt(batch).float()
        by_jit = by_jit.detach()
    for name, logits in (("onnx", by_onnx), ("torchscript", by_jit), ("safetensors", by_safetensors)):
        assert torch.equal(logits.argmax(1), expected.argmax(1)), name
        np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=2e-4, rtol=1e-4, err_msg=name)

    # -- every run made on the way: the Runs tab and `workbench runs` ----------------------------------
    click_tab(qtbot, win, win.runs_panel)
    listed = set(column(win.runs_panel.table, "Run"))
    snap(win, "09-runs-at-the-end")
    made = {first.name, cut_run.name}
    made |= {f"{c.name}/{s.name}" for c in runs.glob("compare-*") for s in c.iterdir() if s.is_dir()}
    assert len(made) >= 2 + 3 + 1 and made <= listed, (made, listed)
    from workbench.cli import main

    capsys.readouterr()
    assert main(["runs", str(project)]) == 0
    printed = capsys.readouterr().out
    for name in made:
        assert name in printed, name
    win.session.set_dirty(False)
    win.close()


PROJECT_FILTER = "Workbench projects (*.toml)"


def _section_center(header, section: int):
    from PySide6.QtCore import QPoint

    x = header.sectionViewportPosition(section) + header.sectionSize(section) // 2
    return QPoint(x, header.height() // 2)
