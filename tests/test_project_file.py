"""The TOML project file: the documented keys, round trips, inspect, bad values."""

from __future__ import annotations

import json
import textwrap

import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.project import load_project, save_project
from workbench.workspace import Workspace

EXAMPLE = textwrap.dedent('''
    [model]
    source = "timm"
    name = "resnet18"
    pretrained = false
    num_classes = 10
    input_size = [3, 64, 64]

    [freeze]
    frozen = ["conv1", "bn1", "layer1", "layer2", "layer3"]
    batchnorm = "freeze"

    [[groups]]
    name = "layer4"
    modules = ["layer4"]
    lr = 1e-4
    weight_decay = 0.05

    [[groups]]
    name = "head"
    modules = ["fc"]
    lr = 1e-3

    [data]
    path = "data/"
    val_split = 0.2

    [train]
    epochs = 5
    batch_size = 32
    optimizer = "adamw"
    scheduler = "cosine"
    device = "auto"
''')


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "project.toml"
    path.write_text(EXAMPLE)
    return path


def test_example_project_resolves(project):
    plan = load_project(project)
    assert plan.resolve_path(plan.data.path) == project.parent / "data"
    ws = Workspace.from_plan(plan, project)
    res = ws.resolve()
    layer4 = ws.tree.node("layer4").param_count
    fc = ws.tree.node("fc").param_count
    assert res.trainable_params == layer4 + fc
    assert [(g.name, g.lr, g.weight_decay, g.numel) for g in res.groups] == [
        ("layer4", 1e-4, 0.05, layer4), ("head", 1e-3, 0.01, fc)]
    assert [w.code for w in res.warnings] == ["batchnorm-frozen-untrained"]  # random init, frozen BN
    # bn1 + layer1 (2 blocks x 2 BN) + layer2, layer3 (2 x 2 BN + 1 downsample BN each)
    assert len(res.bn_eval) == 1 + 4 + 5 + 5


def test_round_trip_keeps_everything(project, tmp_path):
    plan = load_project(project)
    plan.freeze.unfrozen = ["layer3.1"]
    out = tmp_path / "sub" / "copy.toml"
    save_project(plan, out)
    again = load_project(out)
    assert again.freeze == plan.freeze and again.groups == plan.groups and again.train == plan.train
    assert again.model == plan.model
    # Relative paths still point at the same folder from the new location.
    assert again.resolve_path(again.data.path).resolve() == (project.parent / "data").resolve()
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_inspect_project_json(project, capsys):
    assert main(["inspect", str(project), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"model", "total_params", "trainable_params", "frozen_params", "nodes", "groups", "warnings"}
    assert data["total_params"] == data["trainable_params"] + data["frozen_params"]
    root = next(n for n in data["nodes"] if n["path"] == "")
    assert root["state"] == "partial" and root["output_shape"] == [1, 10]
    node = {n["path"]: n for n in data["nodes"]}
    assert node["layer1"]["state"] == "frozen" and node["layer1"]["trainable_params"] == 0
    assert node["fc"] == {**node["fc"], "state": "trainable", "group": "head", "lr": 1e-3, "type": "Linear"}
    assert [g["name"] for g in data["groups"]] == ["layer4", "head"]
    for n in data["nodes"]:
        assert set(n) >= {"path", "type", "params", "trainable_params", "output_shape", "state", "group", "lr"}


@pytest.mark.parametrize("bad,message", [
    ('[model]\nsource = "tf"\n', "source must be one of"),
    ('[freeze]\nbatchnorm = "sometimes"\n', "batchnorm must be one of"),
    ('[train]\nepochs = "five"\n', "epochs must be an integer"),
    ('[train]\noptimizer = "lion"\n', "optimizer must be one of"),
    ('[model]\ninput_size = [224, 224]\n', "input_size must be"),
    ('[bogus]\nx = 1\n', "unknown section"),
    ('[freeze]\nfrozn = []\n', "unknown key"),
    ('[model\n', "not valid TOML"),
])
def test_bad_project_values(tmp_path, bad, message):
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(WorkbenchError, match=message):
        load_project(path)


def test_unknown_path_in_project_is_a_clear_cli_error(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(EXAMPLE.replace('"layer3"]', '"layer5"]'))
    assert main(["inspect", str(path)]) == 2
    assert "unknown module path 'layer5' in [freeze] frozen (did you mean layer" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.toml")]) == 2
    assert "project file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_schema_defaults_are_the_plan_defaults(tmp_path, capsys):
    """One source of truth: the published schema's defaults are what an empty project file gets."""
    from dataclasses import asdict

    from workbench.project import plan_from_dict

    assert main(["schema", "--out", str(tmp_path / "schema.json")]) == 0
    schema = json.loads((tmp_path / "schema.json").read_text())
    empty = plan_from_dict({})
    for section, cls in (("train", "TrainConfig"), ("data", "DataConfig"), ("freeze", "FreezeConfig")):
        props = schema["$defs"][cls]["properties"]
        values = asdict(getattr(empty, section))
        assert set(props) == set(values)
        for key, value in values.items():
            if "default" in props[key]:
                assert props[key]["default"] == value, (section, key)
            else:
                assert value in (None, []), (section, key)
