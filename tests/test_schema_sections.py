"""[head] and [[compare]] are schema sections, and every limit the command line checks is the schema's."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.schema_patch import schema_constant
from workbench.cli import main
from workbench.errors import ProjectError
from workbench.plan import CompareTable, HeadSpec, TrainConfig
from workbench.project import load_project, plan_from_dict, plan_to_dict, project_schema, save_project

MINIMAL = '[model]\nname = "resnet18"\n'


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_head_and_compare_round_trip_through_the_project_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(MINIMAL + textwrap.dedent('''
        [head]
        cut = "layer3"
        hidden = 16

        [[compare]]
        name = "fast-head"
        strategy = "probe"
        lr = 0.01
        frozen = "layer1"

        [[compare]]
        name = "long"
        epochs = 40
    '''))
    plan = load_project(path)
    assert plan.head == HeadSpec(cut="layer3", hidden=[16])  # the defaults are the schema's: pool avg, relu, 0.0
    assert (plan.head.pool, plan.head.activation, plan.head.dropout) == ("avg", "relu", 0.0)
    assert [t.name for t in plan.compare] == ["fast-head", "long"]
    assert plan.compare[0].overrides() == {"frozen": ["layer1"], "lr": 0.01}
    assert plan.compare[1].strategy == "plan" and plan.compare[1].overrides() == {"epochs": 40}
    save_project(plan, tmp_path / "saved.toml")  # saving keeps both sections (it used to drop [[compare]])
    again = load_project(tmp_path / "saved.toml")
    assert again.head == plan.head and again.compare == plan.compare
    assert plan_to_dict(plan_from_dict(plan_to_dict(plan))) == plan_to_dict(plan)


def test_bad_head_and_compare_values_are_one_line_naming_file_section_and_key(tmp_path: Path, capsys) -> None:
    cases = [
        ('[head]\npool = "mean"\n', "p.toml [head] pool must be one of avg, max, avgmax, flatten, none, not 'mean'"),
        ('[head]\nhidden = [16, 0]\n', "p.toml [head] hidden must be >= 1, not 0"),
        ('[head]\ndropot = 0.1\n', "p.toml [head]: unknown key(s) dropot (did you mean 'dropout'?)"),
        ('[head]\ndropout = 1.5\n', "p.toml [head] dropout must be < 1.0, not 1.5"),
        ('[[compare]]\nname = "a"\noptimizer = "adam"\n', "p.toml [[compare]] #1 optimizer must be one of adamw, sgd"),
        ('[[compare]]\nname = "a"\nlr = -1.0\n', "p.toml [[compare]] #1 lr must be >= 0.0, not -1.0"),
        ('[[compare]]\nname = "a"\n[[compare]]\nname = "a"\n', "[[compare]] #2: name 'a' is also the name of"),
        ('[compare]\nname = "a"\n', "p.toml [[compare]] must be an array of tables"),
    ]
    for extra, message in cases:
        path = tmp_path / "p.toml"
        path.write_text(MINIMAL + extra)
        with pytest.raises(ProjectError) as info:
            load_project(path)
        assert message in str(info.value), (extra, str(info.value))
        assert main(["inspect", str(path)]) == 2
        assert message in one_error_line(capsys)


def test_workbench_schema_describes_head_and_compare(tmp_path: Path, capsys) -> None:
    assert main(["schema", "--out", str(tmp_path / "schema.json")]) == 0
    schema = json.loads((tmp_path / "schema.json").read_text())
    assert schema == project_schema()
    head = schema["$defs"]["HeadSpec"]["properties"]
    assert head["pool"]["enum"] == ["avg", "max", "avgmax", "flatten", "none"] and head["pool"]["default"] == "avg"
    assert head["dropout"] == {"default": 0.0, "exclusiveMaximum": 1.0, "minimum": 0.0,
                               "title": "Dropout", "type": "number"}
    assert schema["properties"]["compare"]["type"] == "array"
    compare = schema["$defs"]["CompareTable"]
    assert compare["required"] == ["name"] and compare["additionalProperties"] is False
    train = schema["$defs"]["TrainConfig"]["properties"]
    for key in ("epochs", "lr", "optimizer"):  # an override is described exactly as its [train] key
        assert {k: v for k, v in compare["properties"][key].items() if k not in ("title", "default")} == \
               {k: v for k, v in train[key].items() if k not in ("title", "default")}


def test_a_limit_changed_in_the_schema_reaches_the_cli_checks_and_the_published_schema(tmp_path: Path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(MINIMAL + '[[compare]]\nname = "long"\nepochs = 60\n')
    assert TrainConfig(epochs=60).epochs == 60 and load_project(path).compare[0].epochs == 60
    with schema_constant("MAX_EPOCHS", 50):
        for argv in (["train", str(path), "--epochs", "60"], ["compare", str(path), "--epochs", "60"],
                     ["probe-depth", str(path), "--epochs", "60"]):
            assert main(argv) == 2
            assert "--epochs: epochs must be <= 50, not 60" in one_error_line(capsys)
        assert main(["train", "--help"]) == 0
        assert "[train] epochs (1 to 50)" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
        assert main(["inspect", str(path)]) == 2
        assert "p.toml [[compare]] #1 epochs must be <= 50, not 60" in one_error_line(capsys)
        schema = project_schema()
        assert schema["$defs"]["TrainConfig"]["properties"]["epochs"]["maximum"] == 50
        assert schema["$defs"]["CompareTable"]["properties"]["epochs"]["maximum"] == 50
    assert load_project(path).compare[0].epochs == 60  # restored
    assert CompareTable(name="x", epochs=60).epochs == 60
