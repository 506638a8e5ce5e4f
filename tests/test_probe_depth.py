"""A probe at every depth: one pass of the frozen model serves every depth; the last depth matches a probe run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_looking import one_error_line
from workbench.cli import main
from workbench.run_loading import load_run  # noqa: F401  (the run folder the probe strategy writes)

CLASSES = ("vertical", "horizontal", "checker")


def write_patterns(root: Path, per_class: int = 18, side: int = 32) -> None:
    """Stripes and checks under heavy noise: learnable from features, not trivially."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            period = rng.integers(4, 9)
            phase = rng.integers(0, period)
            pattern = [(xx + phase) // (period // 2) % 2, (yy + phase) // (period // 2) % 2,
                       ((xx + phase) // (period // 2) + (yy // (period // 2))) % 2][label]
            pixels = pattern[..., None] * 140 + rng.normal(60, 55, (side, side, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")


def write_probe_project(folder: Path, epochs: int = 6) -> Path:
    write_patterns(folder / "data")
    path = folder / "project.toml"
    path.write_text("\n".join([
        "[model]", 'source = "timm"', 'name = "efficientnet_lite0"', "pretrained = true", "num_classes = 3",
        "input_size = [3, 64, 64]",
        "[freeze]", 'frozen = [""]', 'unfrozen = ["classifier"]', 'batchnorm = "eval"',
        "[data]", 'path = "data"', "val_split = 0.34", "seed = 0",
        "[train]", f"epochs = {epochs}", "batch_size = 16", "lr = 0.01", "augment = false", "num_workers = 0",
        "seed = 0", "",
    ]))
    return path


@pytest.mark.slow
def test_last_depth_matches_a_probe_run(tmp_path: Path, capsys) -> None:
    project = write_probe_project(tmp_path)
    chart = tmp_path / "depth.png"
    assert main(["probe-depth", str(project), "--json", "--out", str(chart)]) == 0
    data = json.loads(capsys.readouterr().out)
    depths = data["depths"]
    assert [d["path"] for d in depths] == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "classifier"]
    assert [d["width"] for d in depths] == [16, 24, 40, 112, 320, 1280]
    assert all(0 <= d["val_top1"] <= 1 and d["seconds"] >= 0 for d in depths)
    assert [d["params_kept"] for d in depths] == sorted(d["params_kept"] for d in depths)
    assert data["images"] == 54 and chart.stat().st_size > 5_000
    # The probe strategy (only the classifier trains, on the frozen model) reaches the same accuracy within noise.
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 0
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if '"val_accuracy"' in line]
    probe_run = [e["val_accuracy"] for e in epochs if e.get("val_accuracy") is not None][-1]
    assert depths[-1]["val_top1"] > 1 / len(CLASSES) + 0.2  # well above chance: the check below means something
    assert abs(depths[-1]["val_top1"] - probe_run) <= 0.12, (depths[-1]["val_top1"], probe_run)


def test_bad_probe_depth_input(tmp_path: Path, capsys) -> None:
    assert main(["probe-depth", str(tmp_path / "none.toml")]) == 2
    assert one_error_line(capsys) == f"error: project file not found: {tmp_path / 'none.toml'}"
    assert main(["probe-depth", str(tmp_path / "none.toml"), "--epochs", "0"]) == 2
    assert one_error_line(capsys) == ("error: workbench probe-depth: argument --epochs: epochs must be >= 1, not 0 "
                                      "(see workbench probe-depth --help)")  # the schema's limit, as for train
