"""Issue 12.6: frozen BatchNorm on untrained (random-init) statistics is named, with the way out."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from workbench.cli import main

CODE = "batchnorm-frozen-untrained"


def _project(tmp_path: Path, name: str, pretrained: bool, batchnorm: str, frozen: str) -> Path:
    path = tmp_path / f"{name}-{batchnorm}-{pretrained}.toml"
    path.write_text(textwrap.dedent(f'''
        [model]
        source = "timm"
        name = "{name}"
        pretrained = {str(pretrained).lower()}
        num_classes = 3
        input_size = [3, 32, 32]

        [freeze]
        frozen = [{frozen}]
        batchnorm = "{batchnorm}"
    '''))
    return path


def _warning_codes(capsys, project: Path) -> list[str]:
    assert main(["inspect", str(project), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return [w["code"] if isinstance(w, dict) else str(w) for w in out["warnings"]]


def test_random_init_with_frozen_batchnorm_is_warned(tmp_path, capsys):
    codes = _warning_codes(capsys, _project(tmp_path, "resnet18", False, "freeze", '"conv1", "bn1", "layer1"'))
    assert any(CODE in c for c in codes), codes
    assert main(["inspect", str(_project(tmp_path, "resnet18", False, "freeze", '"conv1", "bn1", "layer1"'))]) == 0
    text = capsys.readouterr()
    shown = text.out + text.err
    assert CODE in shown and "pretrained weights" in shown and 'batchnorm = "train"' in shown


@pytest.mark.slow
def test_no_warning_when_batchnorm_trains_or_nothing_is_frozen(tmp_path, capsys):
    assert not any(CODE in c for c in _warning_codes(
        capsys, _project(tmp_path, "resnet18", False, "train", '"conv1", "bn1", "layer1"')))
    assert not any(CODE in c for c in _warning_codes(capsys, _project(tmp_path, "resnet18", False, "freeze", "")))


def test_no_warning_on_pretrained_statistics(tmp_path, capsys):
    codes = _warning_codes(capsys, _project(tmp_path, "efficientnet_lite0", True, "freeze", '"conv_stem", "bn1", "blocks"'))
    assert not any(CODE in c for c in codes), codes


@pytest.mark.slow
def test_train_log_names_the_warning(tmp_path, capsys):
    from PIL import Image

    for cls in ("a", "b", "c"):
        folder = tmp_path / "data" / cls
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (32, 32), (80 * i % 255, 60 * len(cls), 90)).save(folder / f"{i}.png")
    project = _project(tmp_path, "resnet18", False, "freeze", '"conv1", "bn1", "layer1", "layer2", "layer3"')
    project.write_text(project.read_text() + textwrap.dedent(f'''
        [data]
        path = "{(tmp_path / "data").as_posix()}"
        val_split = 0.25

        [train]
        epochs = 1
        batch_size = 4
    '''))
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 0
    assert CODE in capsys.readouterr().err
