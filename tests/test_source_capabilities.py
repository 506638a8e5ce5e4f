"""Model sources declare what they can do; the core and the window ask that, never a source's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.plugin_fixtures import fakenet_plugin, write_fakenet  # noqa: F401  (fixture)
from workbench.backbone import LoadRequest
from workbench.plugins import MODEL_SOURCES, registry
from workbench.sources import capabilities, load_backbone, needs_arch, source_for

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_in_sources_declare_their_capabilities():
    by_name = {caps.name: caps for caps in registry().model_sources()}
    named = [c for c in by_name.values() if c.takes_names]
    files = {c.name: c for c in by_name.values() if c.takes_files}
    assert len(named) == 1 and named[0].pretrained_weights and named[0].ends_in_logits and not named[0].takes_files
    assert {".onnx", ".safetensors", ".pth"} <= {s for c in files.values() for s in c.suffixes}
    onnx = next(c for c in files.values() if ".onnx" in c.suffixes)
    assert not onnx.ends_in_logits and not onnx.builds_for_classes  # its output is checked before training
    assert onnx.file_filter == "ONNX models (*.onnx)"
    weights = next(c for c in files.values() if ".safetensors" in c.suffixes)
    assert weights.takes_arch and not onnx.takes_arch


def test_weights_without_a_config_json_need_their_architecture(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    source = registry().suffix_map()[".safetensors"]
    assert needs_arch(source, weights)
    (tmp_path / "config.json").write_text('{"architecture": "resnet18"}')
    assert not needs_arch(source, weights)
    assert not needs_arch(registry().suffix_map()[".onnx"], tmp_path / "m.onnx")


def test_a_file_named_with_an_architecture_goes_to_the_source_that_takes_one(tmp_path):
    request = LoadRequest(str(tmp_path / "weights.bin"), arch="resnet18")
    assert capabilities(source_for(request)).takes_arch


def test_a_third_party_suffix_wins_over_a_name_lookalike(fakenet_plugin, tmp_path, monkeypatch):  # noqa: F811
    """'resnet18.fakenet' is a FakeNet file, not timm's resnet18 with a tag."""
    monkeypatch.chdir(tmp_path)
    write_fakenet(tmp_path / "resnet18.fakenet")
    backbone = load_backbone(LoadRequest("resnet18.fakenet"))
    assert backbone.source == "fakenet" and backbone.weights == "weights from resnet18.fakenet"
    caps = capabilities("fakenet")
    assert caps.suffixes == (".fakenet",) and caps.file_filter == "FakeNet models (*.fakenet)"
    assert not (caps.takes_names or caps.takes_arch or caps.ends_in_logits)  # undeclared: the safe defaults


def test_the_plugins_command_lists_what_each_source_can_do(fakenet_plugin, capsys):  # noqa: F811
    import json

    from workbench.cli import main

    assert main(["plugins", "--json"]) == 0
    sources = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"][MODEL_SOURCES]}
    assert sources["fakenet"]["suffixes"] == [".fakenet"] and sources["fakenet"]["capabilities"] == []
    named = [p for p in sources.values() if "takes_names" in p["capabilities"]]
    assert len(named) == 1 and "pretrained_weights" in named[0]["capabilities"]
    assert main(["plugins"]) == 0
    assert ".onnx" in capsys.readouterr().out


def test_a_backbone_built_by_hand_takes_no_files_and_is_trusted_to_end_in_logits():
    caps = capabilities("built-in-code")
    assert not caps.takes_files and caps.ends_in_logits


def _source_names() -> set[str]:
    return set(registry().names(MODEL_SOURCES))


def _mentions_source(node: ast.AST) -> bool:
    return "source" in ast.unparse(node).lower()


def _names_in(node: ast.AST, names: set[str]) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in names]


def _plugin_names_used(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """Where the code decides by a model source's name: compares a source with one, looks one up by name,
    asks for one by name, sets one, or lists several."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        hits: list[str] = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_mentions_source(s) for s in sides if not _names_in(s, names)):
                hits = [h for s in sides for h in _names_in(s, names)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if _mentions_source(node.func.value):
                hits = [h for a in node.args for h in _names_in(a, names)]
        elif isinstance(node, ast.Call):
            hits = [h for k in node.keywords if k.arg == "source" for h in _names_in(k.value, names)]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "source"
                                                  for t in node.targets):
            hits = _names_in(node.value, names)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            listed = _names_in(node, names)
            hits = listed if len(set(listed)) >= 2 else []
        found += [(node.lineno, hit) for hit in hits if hasattr(node, "lineno")]
    return found


def test_the_scan_finds_what_it_must():
    code = ('if backbone.source == "onnx": pass\nx = request.source in ("onnx", "checkpoint")\n'
            'y = reg.plugins(MODEL_SOURCES).get("timm")\nLoadRequest(p, source="checkpoint")\n'
            'request.source = "timm"\nORDER = ("onnx", "timm")\nif fmt == "onnx": pass\n')
    hits = _plugin_names_used(ast.parse(code), {"onnx", "checkpoint", "timm"})
    assert sorted({line for line, _ in hits}) == [1, 2, 3, 4, 5, 6]  # an exporter's format (line 7) is no source


@pytest.mark.parametrize("folder", ["workbench", "ui"])
def test_no_core_or_window_module_decides_by_a_model_source_name(folder):
    names = _source_names()
    assert {"timm", "onnx", "checkpoint"} <= names
    used = [f"{path.relative_to(ROOT)}:{line}: {name!r}" for path in sorted((ROOT / folder).rglob("*.py"))
            for line, name in _plugin_names_used(ast.parse(path.read_text(encoding="utf-8")), names)]
    assert used == [], "ask the source's capabilities (workbench.sources.capabilities) instead:\n" + "\n".join(used)


def test_the_window_imports_no_model_library():
    """The window reaches models only through the sources: it never imports timm, onnx or onnx2torch itself."""
    heavy = {"timm", "onnx", "onnx2torch", "onnxruntime"}
    found = []
    for path in sorted((ROOT / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno} {m}" for m in modules if m.split(".")[0] in heavy]
    assert found == []
