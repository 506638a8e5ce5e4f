"""Hostile input, through the real CLI: every bad value is one `error:` line, exit 2, nothing written.

Cases are the ones issue 9 lists (project-file types and ranges, CLI flags, the Python API,
checkpoints, ONNX files, image folders). Each runs ``workbench.cli.main`` in-process.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from workbench.cli import main
from workbench.data import open_images
from workbench.errors import PlanError
from workbench.plan import DataConfig, ModelConfig, TrainConfig

BASE = {
    "model": ['source = "timm"', 'name = "resnet18"', "num_classes = 2", "input_size = [3, 32, 32]"],
    "data": ['path = "data"'],
    "train": ["epochs = 1", "batch_size = 4", "num_workers = 0"],
}


def write_images(root: Path, per_class: int = 4, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def write_project(folder: Path, section: str | None = None, lines: str = "") -> Path:
    """The base project with ``lines`` added to ``section`` (a key given again replaces the base value)."""
    text = []
    sections = dict(BASE)
    if section == "groups":
        sections = {**sections, "[groups]": lines.splitlines()}
    elif section is not None:
        new_keys = {line.split("=")[0].strip() for line in lines.splitlines()}
        kept = [line for line in sections.get(section, []) if line.split("=")[0].strip() not in new_keys]
        sections = {**sections, section: kept + lines.splitlines()}
    for name, body in sections.items():
        text.append(f"[{name}]")
        text.extend(body)
        text.append("")
    path = folder / "project.toml"
    path.write_text("\n".join(text))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "data")
    return tmp_path


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and "Traceback" not in captured.out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# (section, lines, words the message must contain): every TOML case issue 9 names.
TOML_CASES = [
    ("freeze", "frozen = [1, 2]", "frozen must be a string"),
    ("groups", 'name = "g"\nmodules = [1]', "modules must be a string"),
    ("groups", 'name = "g"\nmodules = ["fc"]\nlr = "fast"', "lr must be a number"),
    ("train", 'weight_decay = "lots"', "weight_decay must be a number"),
    ("model", 'num_classes = "ten"', "num_classes must be an integer"),
    ("model", "num_classes = 2.5", "num_classes must be an integer"),
    ("model", "num_classes = -3", "num_classes must be >= 1"),
    ("model", "arch = 5", "arch must be a string"),
    ("model", 'mean = ["a", "b", "c"]', "mean must be a list of one finite number per channel"),
    ("model", "mean = 0.5", "mean must be a list"),
    ("model", "std = [0, 0, 0]", "std must be a list of one positive number"),
    ("data", "path = 5", "path must be a string"),
    ("train", 'grad_clip = "big"', "grad_clip must be a number"),
    ("train", "num_workers = -1", "num_workers must be >= 0"),
    ("train", 'num_workers = "two"', "num_workers must be an integer"),
    ("train", "seed = 9223372036854775807", "seed must be <= 4294967295"),
    ("train", "lr = -1.0", "lr must be >= 0"),
    ("train", "lr = nan", "lr must be a finite number"),
    ("train", "weight_decay = -1.0", "weight_decay must be >= 0"),
    ("train", 'optimizer = "sgd"\nmomentum = -1.0', "momentum must be >= 0"),
    ("train", "label_smoothing = 2.0", "label_smoothing must be < 1"),
    ("train", "warmup_epochs = inf", "warmup_epochs must be a finite number"),
    ("train", "warmup_epochs = -5", "warmup_epochs must be >= 0"),
    ("train", "grad_clip = -1.0", "grad_clip must be > 0"),
    ("train", "batch_size = 0", "batch_size must be >= 1"),
    ("train", "epochs = -1", "epochs must be >= 1"),
    ("train", 'cache_features = "sometimes"', 'cache_features must be "auto", true or false'),
    ("train", "augment = 1", "augment must be true or false"),
    ("model", "input_size = [3, 200000, 200000]", "input_size must be [channels, height, width]"),
    ("model", "input_size = [1, 32, 32]", "has 1 channel(s) but resnet18 takes 3"),
    ("model", "input_size = [4, 32, 32]", "has 4 channel(s) but resnet18 takes 3"),
    ("model", "input_size = [3, 32, 32]\nmean = [0.5, 0.5]", "disagree on the number of channels"),
    ("train", "lrr = 0.1", "unknown key(s) lrr (did you mean 'lr'?)"),
    ("data", "val_split = 1.5", "val_split must be < 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("section", "lines", "expected"), TOML_CASES,
                         ids=[f"{s}:{line.splitlines()[-1]}" for s, line, _ in TOML_CASES])
def test_bad_project_value_is_one_error_and_writes_nothing(folder: Path, capsys, section, lines, expected) -> None:
    project = write_project(folder, section, lines)
    before = project.read_bytes()
    out = folder / "run"
    assert main(["train", str(project), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert expected in line, line
    assert not out.exists() and project.read_bytes() == before


@pytest.mark.slow
def test_good_base_project_trains(folder: Path, capsys) -> None:
    """The base the cases above alter is valid: the errors come from the altered value only."""
    assert main(["train", str(write_project(folder)), "--out", str(folder / "run")]) == 0
    assert (folder / "run" / "model.safetensors").is_file()


FLAG_CASES = [  # the limits and words are the schema's ([train] epochs, batch_size, num_workers)
    (["--batch-size", "-4"], "--batch-size: batch_size must be >= 1, not -4"),
    (["--batch-size", "0"], "--batch-size: batch_size must be >= 1, not 0"),
    (["--batch-size", "100000"], "--batch-size: batch_size must be <= 65,536, not 100,000"),
    (["--workers", "-1"], "--workers: num_workers must be >= 0, not -1"),
    (["--workers", "999"], "--workers: num_workers must be <= 256, not 999"),
    (["--epochs", "-1"], "--epochs: epochs must be >= 1, not -1"),
    (["--epochs", "0"], "--epochs: epochs must be >= 1, not 0"),
    (["--epochs", "1000000"], "--epochs: epochs must be <= 100,000, not 1,000,000"),
    (["--epochs", "two"], "--epochs: expected a whole number, not 'two'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "expected"), FLAG_CASES, ids=[" ".join(f) for f, _ in FLAG_CASES])
def test_bad_train_flag_is_one_error(folder: Path, capsys, flags, expected) -> None:
    out = folder / "run"
    assert main(["train", str(write_project(folder)), "--out", str(out), *flags]) == 2
    assert expected in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--num-classes", "-1"], "--num-classes: num_classes must be >= 1, not -1"),
    (["--num-classes", "0"], "--num-classes: num_classes must be >= 1, not 0"),
    (["--num-classes", "2000000"], "--num-classes: num_classes must be <= 1,000,000, not 2,000,000"),
    (["--depth", "-1"], "--depth: must be at least 0, not -1"),
])
def test_bad_inspect_flag_is_one_error(capsys, args, expected) -> None:
    assert main(["inspect", "resnet18", *args]) == 2
    assert expected in one_error_line(capsys)


def test_bad_input_size_flags(capsys) -> None:
    assert main(["inspect", "resnet18", "--input-size", "3,100000,100000"]) == 2
    assert "too large: at most 64 channels and 8192 pixels a side" in one_error_line(capsys)
    assert main(["inspect", "resnet18", "--input-size", "3,0,32"]) == 2
    assert "expected C,H,W" in one_error_line(capsys)


@pytest.mark.slow
def test_train_output_folder_problems(folder: Path, capsys) -> None:
    project = write_project(folder)
    a_file = folder / "a_file"
    a_file.write_text("x")
    assert main(["train", str(project), "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert main(["train", str(project), "--out", str(a_file / "run")]) == 2
    assert f"{a_file} is a file, not a folder" in one_error_line(capsys)
    assert a_file.read_text() == "x"


def test_python_api_refuses_bad_values_too() -> None:
    with pytest.raises(PlanError, match="batch_size must be >= 1, not 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(PlanError, match="lr must be a finite number, not nan"):
        TrainConfig(lr=math.nan)
    with pytest.raises(PlanError, match="input_size must be"):
        ModelConfig(input_size=(3, 200000, 200000))
    with pytest.raises(PlanError, match="seed must be <="):
        DataConfig(seed=2**63 - 1)
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # TOML's 1 is a fine number


@pytest.mark.slow
def test_schema_command_publishes_the_types_ranges_and_defaults(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {"model", "freeze", "groups", "unfreeze", "data", "train", "adapters", "head",
                                         "compare"}
    train = schema["$defs"]["TrainConfig"]
    assert train["additionalProperties"] is False
    assert train["properties"]["batch_size"] == {**train["properties"]["batch_size"], "minimum": 1, "default": 32}
    assert train["properties"]["lr"]["minimum"] == 0.0
    assert train["properties"]["grad_clip"]["exclusiveMinimum"] == 0.0
    assert set(train["properties"]["optimizer"]["enum"]) == {"adamw", "sgd"}
    assert "null" not in json.dumps(schema)  # TOML has no null: optional keys are simply left out


# ---- checkpoints -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    import timm

    return timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict()


@pytest.mark.parametrize(("config", "expected"), [
    ([1, 2], "config.json: expected a JSON object"),
    ({"architecture": 5}, "config.json: architecture: input should be a valid string, not 5"),
    ({"architecture": "resnet18", "num_classes": "three"}, "num_classes: input should be a valid integer"),
    ({"architecture": "resnet18", "pretrained_cfg": {"mean": "x"}}, "pretrained_cfg.mean: input should be a valid list"),
    ({"architecture": "resnet18", "label_names": "abc"}, "label_names: input should be a valid list"),
])
def test_bad_config_json_beside_a_checkpoint(tmp_path: Path, capsys, resnet_state, config, expected) -> None:
    torch.save(resnet_state, tmp_path / "weights.pth")
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["inspect", str(tmp_path / "weights.pth")]) == 2
    assert expected in one_error_line(capsys)


def test_random_bytes_are_called_damaged_not_malicious(tmp_path: Path, capsys) -> None:
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    assert main(["inspect", str(tmp_path / "random.pth"), "--arch", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "not a PyTorch checkpoint" in line and "contains code" not in line
    (tmp_path / "garbled.pth").write_bytes(b"\x80\x04" + np.random.default_rng(1).bytes(4096))
    assert main(["inspect", str(tmp_path / "garbled.pth"), "--arch", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "damaged PyTorch checkpoint" in line and "contains code" not in line


def test_integer_weights_cast_to_float_are_reported(tmp_path: Path, capsys, resnet_state) -> None:
    state = dict(resnet_state)
    state["bn1.running_var"] = torch.ones_like(state["bn1.running_var"], dtype=torch.int64)
    torch.save(state, tmp_path / "ints.pth")
    assert main(["inspect", str(tmp_path / "ints.pth"), "--arch", "resnet18", "--depth", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 tensor(s) in ints.pth were stored as integers" in out and "bn1.running_var (int64)" in out


# ---- ONNX --------------------------------------------------------------------------------------

class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _export(model: torch.nn.Module, path: Path) -> Path:
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], do_constant_folding=False,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


@pytest.mark.slow
def test_onnx_with_nan_weights_says_so(tmp_path: Path, capsys) -> None:
    model = _Net()
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] = float("nan")
    path = _export(model, tmp_path / "nan.onnx")
    assert main(["inspect", str(path)]) == 2
    line = one_error_line(capsys)
    assert "1 weight tensor(s) hold NaN or infinite values" in line and "batch size" not in line


@pytest.mark.slow
def test_onnx_with_absurd_fixed_dims_says_so(tmp_path: Path, capsys) -> None:
    model = onnx.load(str(_export(_Net(), tmp_path / "ok.onnx")))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, value in zip(dims, (1, 3, 100000, 100000)):
        d.Clear()
        d.dim_value = value
    onnx.save(model, str(tmp_path / "huge.onnx"))
    assert main(["inspect", str(tmp_path / "huge.onnx")]) == 2
    assert "input size 1×3×100000×100000 is absurdly large" in one_error_line(capsys)
    assert main(["inspect", str(tmp_path / "ok.onnx"), "--input-size", "3,100000,100000"]) == 2
    assert "too large" in one_error_line(capsys)


def test_onnx_with_a_huge_constant_of_shape_says_so(tmp_path: Path, capsys) -> None:
    w = numpy_helper.from_array(np.ones((2, 3 * 8 * 8), np.float32), "w")
    shape = numpy_helper.from_array(np.array([100000, 100000, 4], np.int64), "shape")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["gemm"], transB=1),
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="make_big"),
        helper.make_node("ReduceMean", ["big"], ["mean"], keepdims=0),
        helper.make_node("Add", ["gemm", "mean"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "bomb.onnx"))
    assert main(["inspect", str(tmp_path / "bomb.onnx")]) == 2
    line = one_error_line(capsys)
    assert "node 'make_big' (ConstantOfShape) makes a tensor of shape [100000, 100000, 4]" in line
    assert "batch size" not in line


def test_vit_takes_another_input_size(capsys) -> None:
    """timm models built for one size get img_size, so a ViT runs at 32x32 (was an AssertionError)."""
    assert main(["inspect", "vit_tiny_patch16_224", "--input-size", "3,32,32", "--json", "--depth", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    root = next(n for n in data["nodes"] if n["path"] == "")
    assert root["output_shape"] == [1, 1000]
    assert main(["inspect", "vit_tiny_patch16_224", "--input-size", "1,32,32"]) == 2
    assert "has 1 channel(s) but vit_tiny_patch16_224 takes 3" in one_error_line(capsys)


# ---- image folders -----------------------------------------------------------------------------

def test_pixel_bomb_png_is_skipped_at_open_time(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data")
    Image.new("L", (200_000, 1)).save(root / "cat" / "strip.png")
    assert (root / "cat" / "strip.png").stat().st_size < 2000  # a tiny file...
    images = open_images(DataConfig(path=str(root)))
    assert len(images.train) + len(images.val) == 8  # ...that is not loaded
    assert any("cat/strip.png" in p and "extreme aspect ratio (200000×1" in p for p in images.problems)


def test_symlink_loop_follows_each_folder_once(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_class=5)
    os.symlink("..", root / "cat" / "loop")
    os.symlink("../dog", root / "cat" / "more")
    (root / "dog" / "sub").mkdir()
    os.symlink(".", root / "dog" / "sub" / "again")
    images = open_images(DataConfig(path=str(root)))
    items = images.train + images.val
    assert len(items) == 10
    cat = images.classes.index("cat")
    assert all("dog" not in Path(it.name).parts[0] for it in items if it.label == cat)
    problems = "\n".join(images.problems)
    assert "skipped cat/loop/: a symlink loop" in problems
    assert "skipped cat/more/: links into class folder dog/ (its images would be labelled cat)" in problems
    assert "skipped dog/sub/again/:" in problems


@pytest.mark.slow
def test_class_folder_that_is_a_link_to_another_class(tmp_path: Path, capsys) -> None:
    root = write_images(tmp_path / "data")
    os.symlink("cat", root / "kitty")
    project = write_project(tmp_path)
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 2
    assert "class folders cat/ and kitty/ in" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_class_without_validation_image_is_a_warning(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", per_class=6)
    write_images(tmp_path / "data", per_class=1, classes=("rare",))
    images = open_images(DataConfig(path=str(root), val_split=0.2))
    assert "warning: class 'rare' has no validation image; validation accuracy ignores it" in images.problems
