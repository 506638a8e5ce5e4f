"""A third-party plugin (its own distribution, real entry points) appears on every surface without edits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.plugin_fixtures import third_party_plugins  # noqa: F401  (fixture)
from workbench.cli import main
from workbench.project import plan_from_dict


@pytest.mark.slow
def test_third_party_exporter_is_in_export_help(third_party_plugins, capsys):  # noqa: F811
    assert main(["export", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "fakenpz: NumPy archive of every tensor (third-party test exporter) (writes a file)" in help_text
    assert "safetensors: Folder with model.safetensors" in help_text


@pytest.mark.slow
def test_export_refuses_a_format_no_plugin_provides(third_party_plugins, tmp_path, capsys):  # noqa: F811
    assert main(["export", str(tmp_path), "--format", "nosuch", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_plugins_command_lists_installed_and_failed(third_party_plugins, capsys):  # noqa: F811
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    exporters = {p["name"]: p for p in listing["plugins"]["workbench.exporters"]}
    assert exporters["fakenpz"]["class"] == "fake_wb_thirdparty.NpzExporter"
    assert exporters["fakenpz"]["output_kind"] == "file"
    sources = {p["name"]: p for p in listing["plugins"]["workbench.model_sources"]}
    assert sources["timmalias"]["suffixes"] == [".timmname"]
    assert {"timm", "onnx", "checkpoint"} <= set(sources)
    failed = {f["name"]: f for f in listing["failed"]}
    assert "ModuleNotFoundError" in failed["broken"]["error"]
    assert failed["broken"]["group"] == "workbench.datasets"

    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "failed to load:" in text and "plugin 'broken'" in text and "fakenpz" in text


def test_project_file_accepts_an_installed_source_and_names_the_choices(third_party_plugins):  # noqa: F811
    plan = plan_from_dict({"model": {"source": "timmalias", "name": "x.timmname"}})
    assert plan.model.source == "timmalias"
    from workbench.project import ProjectError

    with pytest.raises(ProjectError, match="source must be one of checkpoint, onnx, timm, timmalias, timmnote, not 'nope'"):
        plan_from_dict({"model": {"source": "nope", "name": "x"}})


@pytest.mark.slow
def test_third_party_exporter_exports_a_trained_run_from_the_cli(third_party_plugins, tmp_path):  # noqa: F811
    """End to end in a fresh process: the entry point is found through sys.path like any installed package."""
    import torch

    from workbench.backbone import LoadRequest
    from workbench.export import export_model
    from workbench.sources import load_backbone

    backbone = load_backbone(LoadRequest(str(_alias(tmp_path)), input_size=(3, 32, 32)))
    assert backbone.source == "timm" and backbone.spec.architecture == "resnet18"
    out = tmp_path / "weights.npz"
    result = export_model(backbone.module, backbone.spec, "fakenpz", out)
    assert result.format == "fakenpz" and out.is_file()
    arrays = np.load(out)
    reference = backbone.module.state_dict()["fc.weight"]
    assert torch.equal(torch.from_numpy(arrays["fc.weight"]), reference)


@pytest.mark.slow
def test_variants_follow_the_exporters_capability_not_its_name(third_party_plugins, tmp_path):  # noqa: F811
    """INT8 from a third-party exporter that declares it writes ONNX; refused, naming both, for one that does not."""
    import onnx
    import torch

    from workbench.errors import WorkbenchError
    from workbench.export_data import ReportData
    from workbench.export_pipeline import ExportOptions, export_with_report
    from workbench.export_report import Timing
    from workbench.spec import ModelSpec

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    spec = ModelSpec("tiny", 4, (3, 12, 12))
    x = np.random.default_rng(0).standard_normal((24, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    data = ReportData("24 test inputs", x, labels, calibration_float=x, calibration_source="the test inputs")
    options = ExportOptions(quantize="int8-dynamic", timing=Timing(runs=1, warmup=0), accept_accuracy_drop=True)
    outcome = export_with_report(module, spec, "onnxalias", tmp_path / "m.onnx", None, options, data)
    assert [row.name for row in outcome.report.rows][:2] == ["PyTorch (eager)", "ONNX fp32"]
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    with pytest.raises(WorkbenchError, match="--quantize: for --format onnx or onnxalias only, not fakenpz"):
        export_with_report(module, spec, "fakenpz", tmp_path / "w.npz", None, options, data)
    assert not (tmp_path / "w.npz").exists()


def test_a_sources_own_report_is_worded_by_the_source_in_inspect(third_party_plugins, tmp_path, capsys):  # noqa: F811
    note = tmp_path / "model.timmnote"
    note.write_text("resnet18\n")
    assert main(["inspect", str(note), "--input-size", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "Alias file:\n  model.timmnote names resnet18" in out


def test_an_unreadable_file_names_the_suffixes_the_installed_sources_open(third_party_plugins, tmp_path, capsys):  # noqa: F811
    unknown = tmp_path / "model.xyz"
    unknown.write_text("?")
    assert main(["inspect", str(unknown)]) != 0
    err = capsys.readouterr().err
    assert ".onnx" in err and ".safetensors" in err and ".timmname" in err and ".timmnote" in err


def _alias(tmp_path: Path) -> Path:
    alias = tmp_path / "model.timmname"
    alias.write_text("resnet18\n")
    return alias


@pytest.mark.slow
def test_plugins_command_in_a_fresh_process(third_party_plugins):  # noqa: F811
    env_path = str(third_party_plugins)
    code = f"import sys; sys.path.insert(0, {env_path!r}); from workbench.cli import main; sys.exit(main(['plugins']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fakenpz" in result.stdout and "timmalias" in result.stdout
    assert "Traceback" not in result.stderr
