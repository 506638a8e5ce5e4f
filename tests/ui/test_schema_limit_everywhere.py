"""One limit, every surface: a limit changed in the schema is the limit of the CLI, the Training tab and the Compare tab."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from tests.schema_patch import schema_constant
from tests.ui.test_typed_numbers import type_number
from workbench.cli import main


def test_a_limit_changed_in_the_schema_is_seen_by_the_cli_the_training_tab_and_the_compare_tab(
        qtbot, tmp_path: Path, capsys, dialogs, resnet18_workspace) -> None:
    from PySide6.QtCore import QSettings

    from workbench_ui.main_window import MainWindow

    project = tmp_path / "p.toml"
    project.write_text('[model]\nname = "resnet18"\n')
    with schema_constant("MAX_EPOCHS", 50):
        assert main(["train", str(project), "--epochs", "51"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "epochs must be <= 50, not 51" in err

        win = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                         runs_root=tmp_path / "runs")
        qtbot.addWidget(win)
        win.show()
        win.session.set_workspace(resnet18_workspace)
        train, compare, plan = win.train_panel, win.compare_panel, win.session.plan

        type_number(qtbot, train.epochs, "51")
        assert train.epochs.is_wrong() and train.epochs.problem.text() == "epochs must be <= 50, not 51"
        assert plan.train.epochs != 51 and train.epochs.lineEdit().text() == "51"
        type_number(qtbot, train.epochs, "50")
        assert plan.train.epochs == 50 and not train.epochs.is_wrong()
        qtbot.keyClick(train.epochs.lineEdit(), Qt.Key.Key_Up)  # the arrows stop at the new maximum
        assert plan.train.epochs == 50

        type_number(qtbot, compare.epochs, "51")
        assert compare.epochs.is_wrong() and compare.epochs.problem.text() == "epochs must be <= 50, not 51"
        qtbot.mouseClick(compare.start_button, Qt.MouseButton.LeftButton)
        assert compare.run is None and "must be <= 50" in compare.status.text()
        assert dialogs.calls == []
