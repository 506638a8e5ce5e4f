"""The wheel installs under the project's own names: no generic top-level `ui` or `plugins` package."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process

ROOT = Path(__file__).resolve().parents[1]
FOLDER_OF = {"workbench": "workbench", "workbench_ui": "ui", "workbench_plugins": "plugins"}


def _source_packages() -> set[str]:
    """Every package on disk, under the name it installs as."""
    names = set()
    for installed, folder in FOLDER_OF.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            names.add(".".join((installed, *rel.parts)))
    return names


def test_wheel_installs_only_namespaced_packages(tmp_path: Path) -> None:
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)

    top_level = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top_level == {"workbench", "workbench_ui", "workbench_plugins"}

    installed = {".".join(init.parent.relative_to(target).parts) for init in target.rglob("__init__.py")}
    assert installed == _source_packages(), "a package folder is missing from [tool.setuptools] packages"

    (dist_info,) = target.glob("*.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(dist_info / "entry_points.txt")
    for group in entry_points.sections():
        for name, value in entry_points[group].items():
            module = value.split(":")[0]
            path = target.joinpath(*module.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), f"{group} {name} = {value}"
