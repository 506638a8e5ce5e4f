"""Boundaries the design depends on: a Qt-free core and isolated, entry-point plugins."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

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


def test_import_layers_hold():
    """import-linter contracts in pyproject.toml: core never imports ui/Qt, ui never imports a plugin, plugins never ui."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], capture_output=True, text=True, timeout=300,
                            cwd=Path(workbench.__file__).parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout
