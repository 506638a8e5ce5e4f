"""Boundaries the design depends on: a Qt-free core and isolated, entry-point plugins."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import workbench
from workbench import plugins as plugin_mod
from workbench.plugins import MODEL_SOURCES, PluginRegistry

QT = ("PySide6", "shiboken6", "superqt", "pyqtgraph", "PyQt5", "PyQt6", "qtpy")
CORE = Path(workbench.__file__).parent


def test_core_source_never_imports_qt():
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in QT for n in names), f"{path} imports Qt"


@pytest.mark.slow
def test_core_runs_with_qt_unimportable():
    """Import every core module and inspect a model while any Qt import raises."""
    code = f"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {QT!r}:
            raise ImportError('Qt is blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
import workbench
for m in pkgutil.walk_packages(workbench.__path__, 'workbench.'):
    importlib.import_module(m.name)
from workbench.cli import main
sys.exit(main(['inspect', 'resnet18', '--depth', '0', '--input-size', '3,32,32']))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parameters trainable" in result.stdout


def test_builtin_sources_are_entry_points():
    reg = PluginRegistry()
    assert {"timm", "onnx", "checkpoint"} <= set(reg.plugins(MODEL_SOURCES))
    assert not [f for f in reg.failures if f.group == MODEL_SOURCES]


def test_broken_plugin_is_reported_and_skipped(monkeypatch):
    real = plugin_mod._entry_points

    def with_broken(group):
        extra = [EntryPoint("broken", "no_such_module_xyz:Thing", group),
                 EntryPoint("shapeless", "builtins:object", group)] if group == MODEL_SOURCES else []
        return real(group) + extra

    monkeypatch.setattr(plugin_mod, "_entry_points", with_broken)
    reg = PluginRegistry()
    sources = reg.plugins(MODEL_SOURCES)
    assert "timm" in sources and "broken" not in sources
    failures = {f.name: str(f) for f in reg.failures}
    assert "ModuleNotFoundError" in failures["broken"]
    assert "lacks name, can_load, load" in failures["shapeless"]


@pytest.mark.slow
def test_workbench_without_pyside6_says_what_to_install():
    """`workbench` (the window) with PySide6 unimportable: one clear line and exit 2, no traceback."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6'):
            raise ImportError(f"No module named '{name}'")
sys.meta_path.insert(0, Block())
from workbench.cli import main
sys.exit(main([]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the window needs the GUI extras (pip install 'model-surgery-workbench[gui]')")
    assert "PySide6" in result.stderr


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter), "--no-cache"], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def _core_layers_contract(pyproject: Path) -> dict:
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    layered = [c for c in contracts if c["type"] == "layers" and c.get("containers") == ["workbench"]]
    assert len(layered) == 1, "pyproject.toml declares no layers contract for the core"
    return layered[0]


def test_import_contracts_hold():
    """lint-imports passes: every contract in pyproject.toml is kept, the core's layers among them."""
    root = CORE.parent
    result = _lint_imports(root)
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # contract names wrap at the terminal width
    assert f"{_core_layers_contract(root / 'pyproject.toml')['name']} KEPT" in out


def test_layers_contract_refuses_an_upward_import(tmp_path: Path):
    """The layers are enforced: the schema (bottom) importing the trainer (above it) breaks the contract."""
    root = CORE.parent
    shutil.copytree(CORE, tmp_path / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    plan = tmp_path / "workbench" / "plan.py"
    plan.write_text(plan.read_text() + "\n\ndef _upward() -> None:\n    import workbench.training.trainer  # noqa\n")
    result = _lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert f"{_core_layers_contract(root / 'pyproject.toml')['name']} BROKEN" in out
    assert "workbench.plan is not allowed to import workbench.training" in out
