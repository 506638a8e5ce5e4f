"""Evaluating a model on its validation set: a hand-checkable case, a real run, the CLI, bad inputs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from tests.test_cli_train import write_image_folder
from workbench.cli import main
from workbench.data import Item
from workbench.errors import WorkbenchError
from workbench.evaluate import classify_image, evaluate_items, evaluate_run, format_text
from workbench.run_catalog import read_metrics
from workbench.spec import ModelSpec

CLASSES = ["blue", "green", "red"]
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourModel(nn.Module):
    """Logits for (blue, green, red) = 10 × the mean of the (B, G, R) channels: it names the dominant colour."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))[:, [2, 1, 0]] * self.scale


def colour_spec() -> ModelSpec:
    return ModelSpec("colour", 3, input_size=(3, 8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     label_names=list(CLASSES))


def _uniform(path: Path, colour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), COLOURS[colour]).save(path)
    return path


def test_hand_checkable_confusion_matrix_pairs_and_mistakes(tmp_path):
    # Folder label → the colour actually drawn. Two images are mislabelled on purpose.
    drawn = {"blue": ["blue", "blue", "red"], "green": ["green", "green", "green"], "red": ["red", "green", "red"]}
    items = [Item(label=CLASSES.index(label), name=f"{label}/{i}.png", path=_uniform(tmp_path / label / f"{i}.png", c))
             for label, colours in drawn.items() for i, c in enumerate(colours)]
    ev = evaluate_items(ColourModel(), colour_spec(), items, CLASSES, batch_size=4)
    assert ev.matrix == [[2, 0, 1], [0, 3, 0], [0, 1, 2]]
    assert (ev.total, ev.correct) == (9, 7) and ev.accuracy == pytest.approx(7 / 9)
    assert [(c.name, c.images, c.correct) for c in ev.per_class()] == [("blue", 3, 2), ("green", 3, 3), ("red", 3, 2)]
    assert [c.accuracy for c in ev.per_class()] == pytest.approx([2 / 3, 1.0, 2 / 3])
    pairs = ev.confused_pairs()
    assert [(ev.classes[p.true], ev.classes[p.predicted], p.count) for p in pairs] == [("blue", "red", 1),
                                                                                       ("red", "green", 1)]
    assert pairs[0].share == pytest.approx(1 / 3)
    assert [(m.name, CLASSES[m.true], CLASSES[m.predicted]) for m in ev.mistakes] == [("blue/2.png", "blue", "red"),
                                                                                      ("red/1.png", "red", "green")]
    # A pure colour gives logits (0, 0, 10): softmax 1 / (1 + 2e^-10) for the colour, e^-10 of that for the others.
    top = ev.mistakes[0].top
    assert [t.label for t in top[:1]] == ["red"] and len(top) == 3
    assert top[0].prob == pytest.approx(1 / (1 + 2 * np.exp(-10)), rel=1e-5)
    assert top[1].prob == pytest.approx(np.exp(-10) / (1 + 2 * np.exp(-10)), rel=1e-4)
    text = format_text(ev)
    assert "accuracy: 77.8% (7 of 9; chance 33.3%)" in text
    assert "blue → red: 1 (33.3% of blue)" in text and "red     66.7%  (2 of 3)" in text
    # One file that no longer decodes: named, not a crash.
    (tmp_path / "red" / "1.png").write_bytes(b"not a png")
    with pytest.raises(WorkbenchError, match=r"validation image red/1.png does not decode any more"):
        evaluate_items(ColourModel(), colour_spec(), items, CLASSES)
    # Try an image: the same preprocessing and label names as `workbench predict`.
    pred = classify_image(ColourModel(), colour_spec(), _uniform(tmp_path / "try.png", "green"))
    assert pred.top[0].label == "green" and {t.label for t in pred.top[1:]} == {"blue", "red"}
    assert pred.top[0].prob == pytest.approx(1 / (1 + 2 * np.exp(-10)), rel=1e-5)
    with pytest.raises(WorkbenchError, match="cannot read"):
        classify_image(ColourModel(), colour_spec(), tmp_path / "red" / "1.png")
    with pytest.raises(WorkbenchError, match="image not found"):
        classify_image(ColourModel(), colour_spec(), tmp_path / "nope.png")


def write_tiny_project(root: Path, epochs: int = 1) -> Path:
    write_image_folder(root / "data")
    project = root / "project.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "timm"
        name = "test_resnet"
        num_classes = 3
        input_size = [3, 32, 32]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = {epochs}
        batch_size = 6
        lr = 0.003
        num_workers = 0
        augment = false
    '''))
    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    project = write_tiny_project(root)
    assert main(["train", str(project), "--out", str(root / "runs" / "a")]) == 0
    return project


@pytest.mark.slow
def test_a_real_run_scores_as_its_last_validation(trained, capsys):
    run = trained.parent / "runs" / "a"
    ev = evaluate_run(run, device="cpu")
    last = [r for r in read_metrics(run / "metrics.jsonl") if r.get("type") == "epoch"][-1]
    assert ev.total == 6 and ev.classes == ["blue", "green", "red"]  # 2 of 8 images per class
    assert [c.images for c in ev.per_class()] == [2, 2, 2]
    assert ev.accuracy == pytest.approx(last["val_accuracy"])
    assert ev.weights == "run a, epoch 1 of 1 (finished)" and ev.notices == []
    # The evaluated model classifies one image in eval mode (BatchNorm cannot normalise a batch of one).
    assert ev.module is not None and not ev.module.training
    image = sorted((trained.parent / "data" / "red").iterdir())[0]
    assert ev.classify(image).top[0].label in ev.classes
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--json", "--device", "cpu"]) == 0  # a project: its newest run
    data = json.loads(capsys.readouterr().out)
    assert data["confusion_matrix"] == ev.matrix and sum(map(sum, data["confusion_matrix"])) == 6
    assert data["accuracy"] == pytest.approx(last["val_accuracy"])
    assert [c["class"] for c in data["per_class"]] == ["blue", "green", "red"]
    assert len(data["mistakes"]) == 6 - data["correct"]
    assert all(len(m["top"]) == 3 and m["top"][0]["label"] == m["predicted"] for m in data["mistakes"])
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "per-class accuracy:" in out and "confusion matrix (rows: true class, columns: predicted):" in out
    assert "weights: run a, epoch 1 of 1 (finished)" in out


def _copy_run(project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The run and its data in a new place (the recorded data path rewritten), to damage freely."""
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(project.parent / "data", data)
    shutil.copytree(project.parent / "runs" / "a", run)
    recipe = run / "project.toml"
    recipe.write_text(recipe.read_text().replace(str(project.parent / "data"), str(data)))
    return run, data


@pytest.mark.slow
def test_data_that_no_longer_matches_the_labels(trained, tmp_path, capsys):
    run, data = _copy_run(trained, tmp_path)
    (data / "red").rename(data / "crimson")
    with pytest.raises(WorkbenchError, match=r"no longer matches the run's labels: .* \(new: crimson; missing: red\)"):
        evaluate_run(run, device="cpu")
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.startswith("error: the data no longer matches the run's labels")
    shutil.rmtree(data / "crimson")
    with pytest.raises(WorkbenchError, match="missing: red"):
        evaluate_run(run, device="cpu")


@pytest.mark.slow
def test_changed_or_undecodable_images_are_said(trained, tmp_path):
    run, data = _copy_run(trained, tmp_path)
    victim = sorted((data / "green").iterdir())[0]
    victim.write_bytes(b"\x89PNG garbage")
    ev = evaluate_run(run, device="cpu")
    assert any(victim.name in n for n in ev.notices)  # skipped when the folder is read, and said
    assert any("changed since this run trained" in n for n in ev.notices)


@pytest.mark.slow
def test_runs_without_weights_and_projects_without_runs(trained, tmp_path, capsys):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    for name in ("project.toml", "spec.json"):
        shutil.copy(trained.parent / "runs" / "a" / name, empty / name)
    with pytest.raises(WorkbenchError, match="run empty-run has no weights yet"):
        evaluate_run(empty)
    fresh = write_tiny_project(tmp_path / "fresh")
    assert main(["evaluate", str(fresh)]) == 2
    assert "has no trained runs with weights yet" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "no run folder or project at" in capsys.readouterr().err
