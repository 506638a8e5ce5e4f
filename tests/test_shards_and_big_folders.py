"""Data that never has to be decoded up front: big image folders (checked at first read) and tar shards."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_cli_train import CLASSES, write_image_folder
from workbench.data import open_data, open_images
from workbench.errors import WorkbenchError
from workbench.image_checks import UnreadableImage
from workbench.plan import DataConfig
from workbench.spec import ModelSpec
from workbench_plugins import image_folder


def folder_spec() -> ModelSpec:
    return ModelSpec("test", 3, input_size=(3, 32, 32))


def encoded(label: int, seed: int, fmt: str = "PNG", size: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., label] += 160  # a learnable colour signal
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(root: Path, shards: int = 4, per_shard: int = 6, names: bool = True, prefix: str = "train") -> Path:
    """``shards`` WebDataset tars of ``per_shard`` samples each (``key.png``/``key.jpg`` + ``key.cls``)."""
    root.mkdir(parents=True, exist_ok=True)
    if names:
        (root / "classes.json").write_text(json.dumps(list(CLASSES)))
    for s in range(shards):
        with tarfile.open(root / f"{prefix}-{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                n = s * per_shard + i
                label = n % len(CLASSES)
                fmt, ext = (("PNG", "png"), ("JPEG", "jpg"))[n % 2]
                add(tar, f"{n:06d}.{ext}", encoded(label, n, fmt))
                add(tar, f"{n:06d}.cls", str(label).encode())
    return root


def shards_config(path: str, **kw) -> DataConfig:
    return DataConfig(dataset="shards", path=path, **kw)


# ---- big image folders: listed when opened, checked when read ---------------------------------------------

@pytest.fixture
def lazy(monkeypatch, tmp_path):
    """Every folder counts as big: nothing is decoded when it is opened."""
    monkeypatch.setattr(image_folder, "EAGER_CHECK_FILES", 0)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(image_folder, "_checked_cache", {})


def break_one_jpeg(root: Path) -> Path:
    victim = next(p for p in sorted((root / CLASSES[1]).iterdir()) if p.suffix == ".jpg")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 3 // 4])  # header parses; pixel data cut short
    return victim


def test_a_big_folder_opens_without_decoding_and_skips_a_bad_file_at_first_read(lazy, tmp_path, monkeypatch, caplog):
    root = write_image_folder(tmp_path / "data")
    victim = break_one_jpeg(root)
    opened: list[object] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    config = DataConfig(path=str(root), val_split=0.25)
    images = open_images(config)
    assert opened == []  # listed and stat'ed only
    assert images.problems[0].startswith("note: 24 images listed; each is checked when first read")
    assert images.skipped == 0 and len(images.train) + len(images.val) == 24  # the bad file is still listed
    bundle = open_data(config, None, folder_spec(), augment=False, images=images)
    dataset = bundle.train if any(it.path == victim for it in bundle.train.items) else bundle.val
    assert dataset is not None
    index = next(i for i, it in enumerate(dataset.items) if it.path == victim)
    with caplog.at_level("WARNING", logger="workbench.data"):
        tensor, label = dataset[index]
    stand_in = next(j for j in range(index + 1, len(dataset.items)) if dataset.items[j].label == label)
    assert label == dataset.items[index].label and torch.equal(tensor, dataset[stand_in][0])
    reason = image_folder.check_image(victim).error  # what an open-time check says of that file
    assert reason is not None and reason.startswith("cannot decode (")
    message = f"skipped {CLASSES[1]}/{victim.name}: {reason}"
    assert message in "\n".join(caplog.messages)

    opened.clear()
    monkeypatch.setattr(image_folder, "_checked_cache", {})
    again = open_images(config)  # a later open (another process) knows the file is bad, still decodes nothing
    assert opened == []
    assert any(p.startswith(message) for p in again.problems) and again.skipped == 1
    assert sum(again.counts()[CLASSES[1]]) == 7
    # Same items, same split: the fingerprint a resume compares does not change when a bad file is found.
    assert open_data(config, None, folder_spec(), augment=False, images=again).fingerprint == bundle.fingerprint


def test_a_big_folder_whose_class_is_all_unreadable_says_so(lazy, tmp_path):
    root = write_image_folder(tmp_path / "data", per_class=3)
    config = DataConfig(path=str(root), val_split=0.0)
    for p in (root / CLASSES[2]).iterdir():
        p.write_bytes(b"garbage")
    bundle = open_data(config, None, folder_spec(), augment=False)
    index = next(i for i, it in enumerate(bundle.train.items) if it.name.startswith(f"{CLASSES[2]}/"))
    with pytest.raises(WorkbenchError, match=r"no image of this class decodes .*cannot identify image file"):
        bundle.train[index]
    with pytest.raises(WorkbenchError, match=rf"class folder {CLASSES[2]}/ .* has no images \(3 unreadable files"):
        open_images(config)


def test_resume_on_a_big_folder_with_a_bad_file_is_exact(lazy, tmp_path):
    root = tmp_path / "proj"
    write_image_folder(root / "data")
    break_one_jpeg(root / "data")
    assert_resume_is_exact(root, 'path = "data"\nval_split = 0.25')


# ---- tar shards -------------------------------------------------------------------------------------------

def test_shards_open_with_class_names_and_a_fixed_validation_shard_set(tmp_path):
    root = write_shards(tmp_path / "shards", shards=4)
    images = open_images(shards_config(str(root), val_split=0.25))
    assert images.classes == list(CLASSES)
    assert {it.path.name for it in images.val if it.path} == {"train-000003.tar"}  # the last shard, whole
    assert len(images.train) == 18 and len(images.val) == 6
    assert images.train[0].name == "train-000000.tar:000000"
    assert np.asarray(images.train[1].load()).shape == (20, 20, 3)
    # A brace pattern names the same shards; val_path gives the validation shards explicitly.
    pattern = str(root / "train-{000000..000002}.tar")
    explicit = open_images(shards_config(pattern, val_path=str(root / "train-000003.tar")))
    assert [it.name for it in explicit.train] == [it.name for it in images.train]
    assert [it.name for it in explicit.val] == [it.name for it in images.val]


def test_shard_labels_can_be_class_names_without_a_names_file(tmp_path):
    root = tmp_path / "named"
    root.mkdir()
    with tarfile.open(root / "a.tar", "w") as tar:
        for n, name in enumerate(["zebra", "ant", "zebra", "ant"]):
            add(tar, f"k{n}.png", encoded(n % 2, n))
            add(tar, f"k{n}.cls", name.encode())
    images = open_images(shards_config(str(root), val_split=0.0))
    assert images.classes == ["ant", "zebra"] and [it.label for it in images.train] == [1, 0, 1, 0]


def test_a_shard_with_long_member_names_is_indexed_through_tarfile(tmp_path):
    root = tmp_path / "long"
    root.mkdir()
    key = "sub/" + "k" * 150  # past ustar's 100-byte name field: a pax header, read by tarfile
    with tarfile.open(root / "a.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for n in range(2):
            add(tar, f"{key}{n}.png", encoded(n, n))
            add(tar, f"{key}{n}.cls", str(n).encode())
    images = open_images(shards_config(str(root), val_split=0.0))
    assert [it.name for it in images.train] == [f"a.tar:{key}0", f"a.tar:{key}1"]
    assert [np.asarray(it.load())[0, 0].argmax() for it in images.train] == [0, 1]


def test_memory_is_one_record_per_sample_and_no_shard_stays_open(tmp_path):
    import os

    root = write_shards(tmp_path / "shards", shards=12, per_shard=2)
    before = len(os.listdir("/proc/self/fd"))
    images = open_images(shards_config(str(root), val_split=0.0))
    for item in images.train:
        item.load()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not hasattr(images.train[0], "__dict__")  # slotted records: no per-item dict


def bad_shard_error(tmp_path: Path, case: str) -> str:
    root = write_shards(tmp_path / "shards", shards=3)
    val = None
    if case == "not_a_tar":
        (root / "train-000001.tar").write_bytes(b"this is a text file, not a tar archive\n" * 40)
    elif case == "truncated":
        data = (root / "train-000001.tar").read_bytes()
        (root / "train-000001.tar").write_bytes(data[: len(data) // 2])
    elif case == "no_label":
        with tarfile.open(root / "train-000001.tar", "a") as tar:
            add(tar, "999999.jpg", encoded(0, 9, "JPEG"))
    elif case == "unknown_val_class":
        val_root = tmp_path / "val"
        val_root.mkdir()
        with tarfile.open(val_root / "val-0.tar", "w") as tar:
            add(tar, "v0.png", encoded(0, 1))
            add(tar, "v0.cls", b"7")
        val = str(val_root)
    elif case == "missing":
        return str(pytest.raises(WorkbenchError, open_images, shards_config(str(root / "x-{0..3}.tar"))).value)
    with pytest.raises(WorkbenchError) as info:
        open_images(shards_config(str(root), val_split=0.0 if val else 0.34, val_path=val))
    return str(info.value)


@pytest.mark.parametrize(("case", "expected"), [
    ("not_a_tar", r"shard .*train-000001\.tar is not a tar file"),
    ("truncated", r"shard .*train-000001\.tar is truncated"),
    ("no_label", r"shard .*train-000001\.tar: sample 999999 has no label \(no 999999\.cls member"),
    ("unknown_val_class", r"shard .*val-0\.tar: sample v0 has class index 7, but there are 3 classes"),
    ("missing", r"shards: .*x-0\.tar does not exist \(and 3 more of 4\)"),
])
def test_bad_shards_give_one_clear_message(tmp_path, case, expected):
    import re

    message = bad_shard_error(tmp_path, case)
    assert re.search(expected, message), message
    assert "\n" not in message


def test_a_class_missing_from_the_validation_shards_is_said(tmp_path):
    root = write_shards(tmp_path / "shards", shards=2)
    val_root = tmp_path / "val"
    val_root.mkdir()
    with tarfile.open(val_root / "val-0.tar", "w") as tar:
        for n, label in enumerate([0, 1, 0]):
            add(tar, f"v{n}.png", encoded(label, n))
            add(tar, f"v{n}.cls", str(label).encode())
    images = open_images(shards_config(str(root), val_path=str(val_root)))
    assert f"warning: class {CLASSES[2]!r} has no validation image; validation accuracy ignores it" in images.problems


def test_an_undecodable_sample_is_skipped_at_read_and_listed_next_time(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = write_shards(tmp_path / "shards", shards=2)
    with tarfile.open(root / "train-000000.tar", "a") as tar:
        add(tar, "bad.jpg", encoded(1, 5, "JPEG")[:60])
        add(tar, "bad.cls", b"1")
    config = shards_config(str(root), val_split=0.5)
    bundle = open_data(config, None, folder_spec(), augment=False)
    index = next(i for i, it in enumerate(bundle.train.items) if it.name.endswith(":bad"))
    _, label = bundle.train[index]
    assert label == 1
    again = open_images(config)
    assert any(p.startswith("skipped train-000000.tar:bad: cannot decode") for p in again.problems)
    assert open_data(config, None, folder_spec(), augment=False, images=again).fingerprint == bundle.fingerprint
    with pytest.raises(UnreadableImage):
        next(it for it in again.train if it.name.endswith(":bad")).load()


def test_shards_train_stop_and_resume_exactly_like_an_uninterrupted_run(tmp_path):
    root = tmp_path / "proj"
    write_shards(root / "shards", shards=4, per_shard=6)
    assert_resume_is_exact(root, 'dataset = "shards"\npath = "shards"\nval_split = 0.25')


def test_resuming_on_changed_shards_is_refused(tmp_path):
    from workbench.project import load_project
    from workbench.training.trainer import Trainer, TrainingError
    from workbench.workspace import Workspace

    root = tmp_path / "proj"
    write_shards(root / "shards", shards=3, per_shard=6)
    project = write_project(root, 'dataset = "shards"\npath = "shards"\nval_split = 0.34', epochs=1)
    plan = load_project(project)
    ws = Workspace.from_plan(plan)
    list(Trainer(ws, open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False), root / "run").run())
    with tarfile.open(root / "shards" / "train-000000.tar", "a") as tar:
        add(tar, "extra.png", encoded(0, 77))
        add(tar, "extra.cls", b"0")
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False)
    with pytest.raises(TrainingError, match="the data changed since its checkpoint"):
        list(Trainer(Workspace.from_plan(plan), data, root / "run", resume=True).run())


# ---- shared ------------------------------------------------------------------------------------------------

def write_project(root: Path, data: str, epochs: int = 2, workers: int = 0) -> Path:
    project = root / "project.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "timm"
        name = "test_resnet"
        num_classes = 3
        input_size = [3, 32, 32]

        [freeze]
        frozen = ["conv1", "bn1", "layer1", "layer2"]

        [train]
        epochs = {epochs}
        batch_size = 5
        lr = 0.003
        num_workers = {workers}
        augment = true

    ''') + "[data]\n" + data + "\n")
    return project


def assert_resume_is_exact(root: Path, data: str) -> None:
    """Stop after 3 steps, resume: the same losses and final tensors as a run never stopped."""
    from workbench.project import load_project
    from workbench.training.reports import StepReport
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace

    project = write_project(root, data)

    def trainer(run: Path, resume: bool = False) -> Trainer:
        plan = load_project(project)
        torch.manual_seed(plan.train.seed)
        ws = Workspace.from_plan(plan)
        bundle = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=True)
        return Trainer(ws, bundle, run, resume=resume)

    straight = trainer(root / "a")
    losses_a = [r.loss for r in straight.run() if isinstance(r, StepReport)]
    first = trainer(root / "b")
    for report in first.run():
        if isinstance(report, StepReport) and report.global_step == 3:
            first.request_stop()
    second = trainer(root / "b", resume=True)
    losses_b = [r.loss for r in second.run() if isinstance(r, StepReport)]
    assert len(losses_a) > 4 and losses_b == losses_a[3:]  # exact, step for step
    after_a, after_b = straight.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(after_a[k], after_b[k]) for k in after_a)
