"""Linux desktop integration: the install script's entry, icon and MIME type, and `workbench FILE`."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import cli
from workbench.cli import window

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "packaging" / "linux" / "install-desktop.sh"
PROJECT_TYPE = "application/x-model-surgery-workbench-project"


def _install(data_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    return subprocess.run(["bash", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=120)


def _mime_types(data_home: Path, *names: str) -> list[str]:
    """The type Qt's shared-mime-info database gives each file name (as a file dialog or manager would)."""
    code = ("import sys\nfrom PySide6.QtCore import QMimeDatabase\n"
            "print(*[QMimeDatabase().mimeTypeForFile(n, QMimeDatabase.MatchMode.MatchExtension).name()"
            " for n in sys.argv[1:]])")
    env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    done = subprocess.run([sys.executable, "-c", code, *names], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    """An executable whose path needs quoting in a desktop entry (a space)."""
    exe = tmp_path / "my apps" / "model-surgery-workbench"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return exe


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info is not installed")
def test_install_registers_entry_icon_and_only_workbench_project_files(tmp_path: Path, app: Path) -> None:
    data = tmp_path / "share"
    done = _install(data, "--exec", str(app))
    assert done.returncode == 0, done.stderr

    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    entry.read(data / "applications" / "model-surgery-workbench.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == f'"{app}" %f'
    assert desktop["MimeType"] == f"{PROJECT_TYPE};"  # never application/toml: other TOML files stay theirs
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{desktop['Icon']}.svg").is_file()
    assert _mime_types(data, "digits.workbench.toml", "Cargo.toml", "pyproject.toml") == [
        PROJECT_TYPE, "application/toml", "application/toml"]

    assert _install(data, "--uninstall").returncode == 0
    assert not any(p.name.startswith("model-surgery-workbench") for p in data.rglob("*"))
    assert _mime_types(data, "digits.workbench.toml") == ["application/toml"]


@pytest.mark.slow
def test_install_never_replaces_an_entry_it_did_not_write(tmp_path: Path, app: Path) -> None:
    data = tmp_path / "share"
    foreign = data / "applications" / "model-surgery-workbench.desktop"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[Desktop Entry]\nType=Application\nName=Mine\nExec=mine\n")

    for args in (("--exec", str(app)), ("--uninstall",)):
        done = _install(data, *args)
        assert done.returncode == 2
        assert done.stderr.startswith("error: ") and "not installed by this script" in done.stderr
    assert foreign.read_text().endswith("Exec=mine\n")


@pytest.mark.slow
def test_install_refuses_a_missing_executable(tmp_path: Path) -> None:
    done = _install(tmp_path / "share", "--exec", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "is not an executable file" in done.stderr
    assert not (tmp_path / "share").exists()


def test_a_file_as_the_only_argument_opens_it_in_the_window(tmp_path: Path, monkeypatch) -> None:
    opened: list[Path | None] = []
    monkeypatch.setattr(window, "launch_gui", lambda args, project=None, demo=False: opened.append(project) or 0)
    project = tmp_path / "digits.workbench.toml"
    project.write_text('[model]\nname = "resnet18"\n')

    assert cli.main([str(project)]) == 0  # what the desktop entry's `%f` runs
    assert opened == [project]


@pytest.mark.slow
def test_a_missing_file_or_a_typo_is_still_one_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(window, "launch_gui", lambda *a, **k: pytest.fail("the window opened"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").write_text("a file named like a command")

    assert cli.main([str(tmp_path / "gone.workbench.toml")]) == 2
    assert capsys.readouterr().err.startswith("error: workbench: argument command: invalid choice")
    assert cli.main(["train"]) == 2  # the command, not the file: `train` needs its project argument
    assert capsys.readouterr().err == "error: give a project file to train, or --resume RUN_DIR\n"
