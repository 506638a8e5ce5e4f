"""`workbench compare` on a real image folder: strategies train like their own project files, outputs, errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.test_cli_train import write_image_folder
from workbench.cli import main
from workbench.compare import pareto_front, parse_strategies, strategy_plan
from workbench.project import load_project
from workbench.workspace import Workspace

STRATEGIES = "probe,freeze:2,full-lowlr,discriminative,gradual"


def write_project(tmp_path: Path, extra: str = "") -> Path:
    write_image_folder(tmp_path / "data", per_class=6)
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent('''
        [model]
        source = "timm"
        name = "resnet18"
        num_classes = 3
        input_size = [3, 32, 32]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = 2
        batch_size = 6
        lr = 0.003
        num_workers = 0
        augment = false
        seed = 7
    ''') + extra)
    return project


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    project = write_project(tmp, extra=textwrap.dedent('''
        [[compare]]
        name = "head-fast"
        strategy = "probe"
        lr = 0.01
    '''))
    # timm's test_resnet (resnet18's layout, 4% of its weights): six runs of a few MB, not of ~200 MB each
    project.write_text(project.read_text().replace('name = "resnet18"', 'name = "test_resnet"'))
    code = main(["compare", str(project), "--strategies", STRATEGIES + ",head-fast", "--out", str(tmp / "cmp"),
                 "--json", str(tmp / "results.json")])
    return tmp, project, code


@pytest.mark.slow
def test_compare_writes_table_json_markdown_png(compared, capsys):
    tmp, _project, code = compared
    assert code == 0
    data = json.loads((tmp / "results.json").read_text())
    names = [s["name"] for s in data["strategies"]]
    assert names == ["probe", "freeze:2", "full-lowlr", "discriminative", "gradual", "head-fast"]
    keys = {"name", "trainable_params", "total_params", "val_top1", "val_top1_best", "best_epoch", "train_top1",
            "wall_s", "images_per_s", "optimizer_state_bytes", "grad_bytes", "peak_mem_bytes", "cached", "run_dir"}
    by = {s["name"]: s for s in data["strategies"]}
    for s in data["strategies"]:
        assert set(s) == keys
        assert 0 <= s["val_top1"] <= 1 and s["wall_s"] > 0 and s["peak_mem_bytes"] > 0
        assert (Path(s["run_dir"]) / "model.safetensors").is_file()
        assert s["optimizer_state_bytes"] == 2 * s["grad_bytes"]  # AdamW
    total = by["probe"]["total_params"]
    assert by["probe"]["trainable_params"] == 96 * 3 + 3  # test_resnet's head: 96 features, 3 classes
    assert by["full-lowlr"]["trainable_params"] == by["discriminative"]["trainable_params"] == total
    assert by["gradual"]["trainable_params"] > by["probe"]["trainable_params"]  # one group joined at epoch 2
    assert by["probe"]["cached"] and by["head-fast"]["cached"] and not by["full-lowlr"]["cached"]
    assert data["data"]["train_images"] + data["data"]["val_images"] == 18
    assert (tmp / "results.md").read_text().startswith("| strategy | val top-1")
    assert (tmp / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp / "cmp" / "compare.json").is_file() and (tmp / "cmp" / "compare.png").is_file()
    # strategy plans are recorded as ordinary project files
    probe = load_project(Path(by["probe"]["run_dir"]) / "project.toml")
    assert probe.freeze.frozen == [""] and probe.freeze.unfrozen == ["fc"]
    assert load_project(Path(by["full-lowlr"]["run_dir"]) / "project.toml").train.lr == pytest.approx(0.0003)
    assert load_project(Path(by["head-fast"]["run_dir"]) / "project.toml").train.lr == pytest.approx(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["discriminative", "gradual"])
def test_strategy_trains_the_same_weights_as_its_project_file_alone(compared, name):
    tmp, _project, _code = compared
    data = json.loads((tmp / "results.json").read_text())
    run = Path(next(s["run_dir"] for s in data["strategies"] if s["name"] == name))
    alone = tmp / f"alone-{name.replace(':', '_')}"
    assert main(["train", str(run / "project.toml"), "--out", str(alone)]) == 0
    a, b = load_file(str(run / "model.safetensors")), load_file(str(alone / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def test_strategy_plans_on_resnet18(tmp_path):
    project = write_project(tmp_path)
    plan = load_project(project)
    ws = Workspace.from_plan(plan)
    strategies = {s.name: s for s in parse_strategies("probe,freeze:1,full,full-lowlr,discriminative:0.5,gradual,plan")}
    gradual = strategy_plan(plan, ws.tree, strategies["gradual"])
    assert gradual.freeze.frozen == [""] and [s.groups for s in gradual.unfreeze] == [["layer4"]]  # 2 epochs
    disc = strategy_plan(plan, ws.tree, strategies["discriminative:0.5"])
    lrs = [g.lr for g in disc.groups]
    assert lrs[-1] == pytest.approx(0.003) and lrs[-2] == pytest.approx(0.0015)
    assert strategy_plan(plan, ws.tree, strategies["freeze:1"]).freeze.frozen == ["conv1", "bn1", "layer1"]
    assert strategy_plan(plan, ws.tree, strategies["plan"]).freeze == plan.freeze


@pytest.mark.slow
def test_bad_strategy_inputs_are_one_line_errors(tmp_path, capsys):
    project = write_project(tmp_path)
    for args, message in [
        (["--strategies", "probe,nope"], "unknown strategy 'nope'"),
        (["--strategies", "freeze:x"], "freeze:N needs a whole number"),
        (["--strategies", "freeze:9"], "cannot freeze the first 9"),
        (["--strategies", "probe,probe"], "listed twice"),
        (["--strategies", "discriminative:2"], "factor must be in (0, 1]"),
        ([], "no strategies given"),
    ]:
        assert main(["compare", str(project), "--out", str(tmp_path / "out")] + args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (args, err)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("earlier run")
    assert main(["compare", str(project), "--strategies", "probe", "--out", str(tmp_path / "used")]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (tmp_path / "used" / "keep.txt").read_text() == "earlier run"
    # [[compare]] tables are a schema section: checked when the project loads, each key in its section's words.
    for i, (table, message) in enumerate([
        ('name = "x"\nlr_typo = 1', "[[compare]] #1: unknown key(s) lr_typo (known: name, strategy, frozen, unfrozen,"),
        ('name = "x"\nbatchnorm = "frozen"', "[[compare]] #1 batchnorm must be one of freeze, train, eval"),
        ('lr = 0.1', "[[compare]] #1 name is required"),
        ('name = "x"\nepochs = 0', "[[compare]] #1 epochs must be >= 1, not 0"),
    ]):
        bad = write_project(tmp_path / f"bad{i}", extra=f"\n[[compare]]\n{table}\n")
        assert main(["compare", str(bad), "--out", str(tmp_path / "bad-out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad.name} ") and message in err and err.count("\n") == 1, err
    bad = write_project(tmp_path / "nope", extra='\n[[compare]]\nname = "x"\nstrategy = "nope"\n')
    assert main(["compare", str(bad), "--out", str(tmp_path / "bad-out")]) == 2
    assert "[[compare]] 'x': unknown strategy 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "bad-out").exists()


def test_pareto_front():
    from workbench.compare import StrategyResult

    def r(name, acc, wall):
        return StrategyResult(name, 1, 1, acc, acc, 0, acc, wall, 1.0, 0, 0, 0, False, "")

    results = [r("fast", 0.5, 1.0), r("slow-better", 0.9, 10.0), r("dominated", 0.4, 5.0)]
    assert pareto_front(results) == {"fast", "slow-better"}


@pytest.mark.slow
def test_a_crashing_strategy_is_reported_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    from workbench.training.trainer import Trainer

    project = write_project(tmp_path, extra=textwrap.dedent('''
        [[compare]]
        name = "broken"
        strategy = "full"
    '''))
    real_run = Trainer.run

    def run(self):  # a crash no check can foresee (a driver fault, a bug), in one strategy's training
        if self.run_dir.name == "broken":
            raise RuntimeError("simulated crash")
        return real_run(self)

    monkeypatch.setattr(Trainer, "run", run)
    code = main(["compare", str(project), "--strategies", "broken,probe", "--epochs", "1",
                 "--out", str(tmp_path / "cmp")])
    captured = capsys.readouterr()
    assert code == 1
    assert "[1/2 broken] failed: RuntimeError: simulated crash" in captured.err
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [s["name"] for s in data["strategies"]] == ["probe"]
    assert data["failed"][0]["name"] == "broken"
