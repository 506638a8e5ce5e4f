"""The data pipeline on real image folders, the bundled digits, and a real timm model's spec."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data import (
    DataBundle,
    ImageDataset,
    Item,
    LabelledImages,
    build_transform,
    check_num_classes,
    open_data,
    open_images,
    stratified_split,
    thumbnails,
)
from workbench.errors import WorkbenchError
from workbench.plan import DataConfig
from workbench_plugins import image_folder

FORMATS = [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp"), ("JPEG", ".JPEG"), ("PNG", ".PNG")]
BASE_COLOURS = {"cats": (200, 40, 40), "dogs": (40, 200, 40), "owls": (40, 40, 200)}


def write_image(path: Path, colour: tuple[int, int, int], seed: int, fmt: str, size: int = 16) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-30, 30, (size, size, 3))
    arr = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt)


def make_folder(root: Path, classes: dict[str, tuple[int, int, int]] = BASE_COLOURS, per_class: int = 6,
                seed: int = 0) -> Path:
    for ci, (name, colour) in enumerate(classes.items()):
        for i in range(per_class):
            fmt, suffix = FORMATS[i % len(FORMATS)]
            write_image(root / name / f"img{i:02d}{suffix}", colour, seed + 100 * ci + i, fmt)
    return root


@pytest.fixture(scope="module")
def spec():
    import timm

    from workbench.backbone import LoadRequest
    from workbench_plugins.timm_source import spec_from_timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    return spec_from_timm(model, LoadRequest("resnet18", input_size=(3, 32, 32)), False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


def folder_config(path: Path, **kwargs) -> DataConfig:
    return DataConfig(path=str(path), dataset="folder", **kwargs)


def names(items: list[Item]) -> list[str]:
    return [it.name for it in items]


def error_of(config: DataConfig, base_dir: Path | None = None) -> str:
    with pytest.raises(WorkbenchError) as info:
        open_images(config, base_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- image folders


def test_folder_reads_every_format_and_ignores_hidden_files(folder: Path):
    (folder / "cats" / ".DS_Store").write_bytes(b"\0\1junk")
    write_image(folder / "cats" / ".hidden.png", (0, 0, 0), 1, "PNG")
    write_image(folder / ".thumbs" / "x.png", (0, 0, 0), 2, "PNG")
    write_image(folder / "dogs" / "nested" / "deep.jpg", (40, 200, 40), 3, "JPEG")
    images = open_images(folder_config(folder, val_split=0.34))
    assert images.classes == ["cats", "dogs", "owls"]
    assert images.problems == [] and images.skipped == 0
    # round(6 * 0.34) = 2 validation images per class; dogs has 7 images.
    assert images.counts() == {"cats": (4, 2), "dogs": (5, 2), "owls": (4, 2)}
    all_names = names(images.train) + names(images.val)
    assert "dogs/nested/deep.jpg" in all_names and "cats/img04.JPEG" in all_names
    assert not any("hidden" in n or "thumbs" in n or "DS_Store" in n for n in all_names)
    for item in images.train + images.val:
        img = item.load()
        assert img.mode == "RGB" and img.size == (16, 16)
        assert item.name.split("/")[0] == images.classes[item.label]


def test_relative_path_resolves_against_base_dir(folder: Path):
    images = open_images(DataConfig(path="data", val_split=0.0), base_dir=folder.parent)
    assert len(images.train) == 18 and images.val == []


def test_split_is_deterministic_stratified_and_ignores_filesystem_order(folder: Path, monkeypatch):
    config = folder_config(folder, val_split=0.5, seed=3)
    first = open_images(config)
    real_walk = os.walk

    def reversed_walk(top, *args, **kwargs):
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            dirnames.reverse()
            yield dirpath, dirnames, list(reversed(filenames))

    monkeypatch.setattr(image_folder.os, "walk", reversed_walk)
    second = open_images(config)
    monkeypatch.undo()
    assert names(first.train) == names(second.train) and names(first.val) == names(second.val)
    assert first.counts() == {c: (3, 3) for c in first.classes}
    assert set(names(first.train)).isdisjoint(names(first.val))

    other_seed = open_images(folder_config(folder, val_split=0.5, seed=4))
    assert other_seed.counts() == first.counts()
    assert names(other_seed.val) != names(first.val)


def test_split_is_pinned_across_machines_and_classes_are_independent():
    # Pinned values: a change here would silently reshuffle every user's validation set.
    assert stratified_split([0] * 5 + [1] * 5, 2, 0.4, 0, ["a", "b"]) == ([0, 2, 4, 6, 7, 8], [1, 3, 5, 9])
    assert stratified_split([0] * 5 + [1] * 5, 2, 0.4, 1, ["a", "b"]) == ([0, 1, 3, 5, 6, 8], [2, 4, 7, 9])
    # Adding images to class "a" leaves class "b"'s split untouched.
    _, val = stratified_split([0] * 9 + [1] * 5, 2, 0.4, 0, ["a", "b"])
    assert [i - 9 for i in val if i >= 9] == [0, 4]


def test_validation_folder(folder: Path, tmp_path: Path):
    val_root = make_folder(tmp_path / "val", {"cats": (200, 40, 40), "owls": (40, 40, 200)}, per_class=2, seed=50)
    (val_root / "dogs").mkdir()  # an empty validation class is fine
    images = open_images(folder_config(folder, val_path=str(val_root), val_split=0.5))
    assert images.counts() == {"cats": (6, 2), "dogs": (6, 0), "owls": (6, 2)}
    assert all(it.path is not None and val_root in it.path.parents for it in images.val)
    assert [images.classes[it.label] for it in images.val] == ["cats", "cats", "owls", "owls"]

    write_image(val_root / "bats" / "b.png", (1, 2, 3), 9, "PNG")
    message = error_of(folder_config(folder, val_path=str(val_root)))
    assert "'bats'" in message and str(val_root) in message

    assert "same folder" in error_of(folder_config(folder, val_path=str(folder)))


def test_unreadable_files_are_skipped_and_reported(folder: Path):
    good = (folder / "cats" / "img00.png").read_bytes()
    write_image(folder / "dogs" / "broken.jpg", (9, 9, 9), 5, "JPEG", size=64)
    jpeg = (folder / "dogs" / "broken.jpg").read_bytes()
    # Cut inside the pixel data: the header still parses and Image.verify() passes.
    (folder / "dogs" / "broken.jpg").write_bytes(jpeg[: len(jpeg) * 3 // 4])
    (folder / "cats" / "notes.png").write_text("not an image, just text renamed to .png")
    (folder / "cats" / "readme.txt").write_text("hello")
    (folder / "cats" / "empty.bmp").write_bytes(b"")
    (folder / "owls" / "half.png").write_bytes(good[: len(good) // 2])
    (folder / "loose.png").write_bytes(good)
    images = open_images(folder_config(folder, val_split=0.0))
    assert images.skipped == 6 and len(images.problems) == 6
    report = "\n".join(images.problems)
    for name in ("dogs/broken.jpg", "cats/notes.png", "cats/readme.txt", "cats/empty.bmp", "owls/half.png",
                 "loose.png"):
        assert f"skipped {name}" in report
    assert "cats/notes.png: cannot decode (cannot identify image file)" in report
    assert "dogs/broken.jpg: cannot decode (image file is truncated" in report
    assert "not an image file (.txt" in report
    assert str(folder) not in report  # relative names, not long absolute paths
    assert images.counts() == {c: (6, 0) for c in images.classes}
    assert not {"broken.jpg", "notes.png", "half.png"} & {Path(n).name for n in names(images.train)}


def test_class_with_only_unreadable_files_is_an_error(folder: Path):
    for p in (folder / "owls").iterdir():
        p.write_bytes(b"garbage")
    message = error_of(folder_config(folder))
    assert "class folder owls/" in message and "6 unreadable files skipped" in message


@pytest.mark.parametrize("case", ["unset", "missing", "file", "empty", "loose", "no_dirs", "empty_class",
                                  "one_class", "val_split_starves", "val_split_range", "unknown_dataset"])
def test_bad_input_gives_one_clear_line(tmp_path: Path, case: str):
    root = tmp_path / "data"
    config = folder_config(root)
    expected = [str(root)]
    if case == "unset":
        config, expected = DataConfig(path=None), ["no data folder set"]
    elif case == "missing":
        expected.append("does not exist")
    elif case == "file":
        root.write_text("x")
        expected.append("is not a folder")
    elif case == "empty":
        root.mkdir()
        expected.append("is empty")
    elif case == "loose":
        write_image(root / "a.png", (1, 1, 1), 0, "PNG")
        expected.append("no class subfolders")
    elif case == "no_dirs":
        root.mkdir()
        (root / "labels.csv").write_text("a,b")
        expected.append("no class subfolders")
    elif case == "empty_class":
        make_folder(root)
        (root / "dogs").mkdir(exist_ok=True)
        for p in (root / "dogs").iterdir():
            p.unlink()
        expected.append("class folder dogs/")
        expected.append("has no images")
    elif case == "one_class":
        make_folder(root, {"cats": (1, 2, 3)})
        expected = ["at least 2 classes", "found 1 (cats)"]
    elif case == "val_split_starves":
        make_folder(root, {"cats": (1, 2, 3)}, per_class=4)
        write_image(root / "dogs" / "only.png", (9, 9, 9), 0, "PNG")
        config.val_split = 0.5
        expected = ["val_split = 0.5", "'dogs'", "no training images"]
    elif case == "val_split_range":
        make_folder(root)
        with pytest.raises(WorkbenchError, match="val_split must be < 1.0"):  # refused at assignment
            config.val_split = 1.0
        assert config.val_split != 1.0
        return
    elif case == "unknown_dataset":
        config = DataConfig(dataset="no_such_dataset")
        expected = ["no_such_dataset", "folder", "digits"]
    message = error_of(config)
    for part in expected:
        assert part in message, (part, message)


def test_file_that_vanishes_after_open_raises_clear_error(folder: Path):
    images = open_images(folder_config(folder, val_split=0.0))
    victim = images.train[0]
    assert victim.path is not None
    victim.path.unlink()
    with pytest.raises(WorkbenchError, match=r"^cannot read .*img00\.png"):
        victim.load()


def test_load_converts_transparency_and_16_bit():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    arr16 = np.full((4, 4), 65535, dtype=np.uint16)
    from workbench.data import to_rgb

    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.fromarray(arr16)).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.fromarray((arr16 // 2).astype(np.uint16))).getpixel((0, 0)) == (127, 127, 127)
    with pytest.raises(WorkbenchError, match="neither a path nor pixels"):
        Item(label=0, name="x").load()


# ---------------------------------------------------------------- digits


def test_digits_dataset():
    images = open_images(DataConfig(dataset="digits", val_split=0.2, seed=0))
    assert images.classes == [str(d) for d in range(10)]
    assert len(images.train) + len(images.val) == 1797
    for n_train, n_val in images.counts().values():
        assert abs(n_val / (n_train + n_val) - 0.2) < 0.01
    pixels = np.stack([it.pixels for it in images.train])
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (8, 8, 3)
    assert pixels.min() == 0 and pixels.max() == 255
    assert (pixels[..., 0] == pixels[..., 2]).all()
    img = images.train[0].load()
    assert img.mode == "RGB" and img.size == (8, 8)
    again = open_images(DataConfig(dataset="digits", val_split=0.2, seed=0))
    assert names(again.val) == names(images.val)
    assert "val_path" in error_of(DataConfig(dataset="digits", val_path="elsewhere"))


@pytest.mark.slow
def test_digits_are_scikit_learns_without_importing_it():
    """Read from the CSV scikit-learn ships (importing it costs seconds): the same pixels and labels."""
    code = ("import sys\n"
            "from workbench.data import open_images\n"
            "from workbench.plan import DataConfig\n"
            "images = open_images(DataConfig(dataset='digits'))\n"
            "print(len(images.train) + len(images.val), 'sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1797", "False"]

    from sklearn.datasets import load_digits

    from workbench_plugins.digits_dataset import digits_arrays

    pixels, labels = digits_arrays()
    bunch = load_digits()
    expected = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    assert (labels == bunch.target).all()
    assert (pixels[..., 1] == expected).all() and pixels.shape == (1797, 8, 8, 3)


# ---------------------------------------------------------------- transforms and datasets


def test_transform_shape_and_normalisation(spec, tmp_path: Path):
    assert spec.input_size == (3, 32, 32)
    transform = build_transform(spec, train=False, augment=False)
    grey = Image.new("RGB", (50, 40), (128, 128, 128))
    out = transform(grey)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert torch.allclose(out.mean(dim=(1, 2)), expected.float(), atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2)), torch.zeros(3), atol=1e-5)


def test_augment_off_is_deterministic_and_on_is_random(spec, folder: Path):
    assert repr(build_transform(spec, train=True, augment=False)) == repr(build_transform(spec, False, False))
    fixed = open_data(folder_config(folder), None, spec, augment=False)
    first = [fixed.train[0][0] for _ in range(3)]
    assert all(torch.equal(first[0], t) for t in first)
    augmented = open_data(folder_config(folder), None, spec, augment=True)
    draws = [augmented.train[0][0] for _ in range(5)]
    assert any(not torch.equal(draws[0], t) for t in draws[1:])
    # Validation never augments.
    assert torch.equal(augmented.val[0][0], augmented.val[0][0])
    assert torch.equal(augmented.val[0][0], fixed.val[0][0])


def test_open_data_bundle(spec, folder: Path):
    bundle = open_data(folder_config(folder, val_split=0.34), None, spec, augment=False)
    assert isinstance(bundle, DataBundle)
    assert bundle.classes == ["cats", "dogs", "owls"]
    assert bundle.counts == {"cats": (4, 2), "dogs": (4, 2), "owls": (4, 2)}
    assert len(bundle.train) == 12 and bundle.val is not None and len(bundle.val) == 6
    x, y = bundle.val[0]
    assert x.shape == (3, 32, 32) and isinstance(y, int) and 0 <= y < 3
    assert bundle.summary() == f"{folder}: 3 classes, 12 train / 6 val images; 0 skipped"
    no_val = open_data(folder_config(folder, val_split=0.0), None, spec, augment=False)
    assert no_val.val is None and "no validation images" in no_val.summary()

    digits = open_data(DataConfig(dataset="digits", val_split=0.2), None, spec, augment=False)
    assert digits.summary() == "digits: 10 classes, 1,438 train / 359 val images; 0 skipped"
    assert digits.train[0][0].shape == (3, 32, 32)
    grey_spec = replace(spec, input_size=(1, 28, 28), mean=(0.5,), std=(0.5,))
    grey = open_data(DataConfig(dataset="digits"), None, grey_spec, augment=True)
    assert grey.train[0][0].shape == (1, 28, 28) and grey.val is not None and grey.val[0][0].shape == (1, 28, 28)
    with pytest.raises(WorkbenchError, match="4-channel"):
        open_data(DataConfig(dataset="digits"), None, replace(spec, input_size=(4, 32, 32)), augment=False)


def test_fingerprint_tracks_data_split_and_transform(spec, folder: Path):
    def fp(config: DataConfig, model_spec=spec, augment: bool = False) -> str:
        return open_data(config, None, model_spec, augment).fingerprint

    base = folder_config(folder, val_split=0.34, seed=0)
    reference = fp(base)
    assert fp(base) == reference
    assert fp(folder_config(folder, val_split=0.34, seed=0)) == reference

    assert fp(folder_config(folder, val_split=0.34, seed=1)) != reference  # split
    assert fp(folder_config(folder, val_split=0.5, seed=0)) != reference  # split
    assert fp(base, replace(spec, input_size=(3, 40, 40))) != reference  # transform
    assert fp(base, replace(spec, mean=(0.5, 0.5, 0.5))) != reference  # transform
    assert fp(base, augment=True) != reference  # training transform

    target = folder / "dogs" / "img03.bmp"
    stat = target.stat()
    write_image(target, (0, 0, 0), 999, "BMP")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    changed = fp(base)
    assert changed != reference  # a file changed
    write_image(folder / "owls" / "extra.png", (1, 1, 1), 7, "PNG")
    assert fp(base) not in (reference, changed)  # a file added

    d0 = fp(DataConfig(dataset="digits", seed=0))
    assert d0 == fp(DataConfig(dataset="digits", seed=0))
    assert d0 != fp(DataConfig(dataset="digits", seed=1))


@pytest.mark.slow
def test_dataloader_with_worker_processes(spec, folder: Path):
    bundle = open_data(folder_config(folder, val_split=0.34), None, spec, augment=True)
    clone = pickle.loads(pickle.dumps(bundle.train))
    assert isinstance(clone, ImageDataset) and clone.labels == bundle.train.labels
    # spawn (the default on macOS and Windows) pickles the dataset into each worker.
    loader = torch.utils.data.DataLoader(bundle.train, batch_size=4, num_workers=2, shuffle=True,
                                         multiprocessing_context="spawn")
    seen = 0
    for x, y in loader:
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        seen += len(y)
    assert seen == 12

    digits = open_data(DataConfig(dataset="digits"), None, spec, augment=False)
    x, y = next(iter(torch.utils.data.DataLoader(digits.val, batch_size=64, num_workers=2)))
    assert x.shape == (64, 3, 32, 32) and set(y.tolist()) <= set(range(10))


# ---------------------------------------------------------------- helpers


def test_thumbnails(folder: Path):
    images = open_images(folder_config(folder))
    thumbs = thumbnails(images, per_class=2, size=24)
    assert [c for c, _ in thumbs] == ["cats", "cats", "dogs", "dogs", "owls", "owls"]
    assert all(img.size == (24, 24) and img.mode == "RGB" for _, img in thumbs)
    digits = thumbnails(open_images(DataConfig(dataset="digits")), per_class=1, size=32)
    assert [c for c, _ in digits] == [str(d) for d in range(10)]
    # Tiny digits are upscaled with hard edges: only the original gray levels appear.
    assert len(set(digits[0][1].getdata())) <= 64


def test_check_num_classes():
    classes = ["a", "b", "c"]
    assert check_num_classes(classes, 3, adapt=False) == 3
    assert check_num_classes(classes, None, adapt=False) == 3
    assert check_num_classes(classes, 10, adapt=True) == 3
    with pytest.raises(WorkbenchError) as info:
        check_num_classes(classes, 10, adapt=False)
    assert str(info.value) == ("the data has 3 classes (a, b, c) but the model's head has 10 outputs; "
                               "set [model] num_classes = 3 or pass --adapt-head")
    with pytest.raises(WorkbenchError, match="no classifier head"):
        check_num_classes(classes, 0, adapt=False)


def test_plugin_must_return_labelled_images(monkeypatch):
    from workbench.plugins import DATASETS, PluginRegistry

    class Lonely:
        name = "lonely"

        def open(self, config, base_dir):
            return LabelledImages(["only"], [Item(label=0, name="x", pixels=np.zeros((2, 2, 3), np.uint8))], [])

    reg = PluginRegistry()
    reg.register(DATASETS, Lonely())
    monkeypatch.setattr("workbench.plugins._registry", reg)
    assert "at least 2 classes" in error_of(DataConfig(dataset="lonely"))


@pytest.mark.slow
def test_importing_data_module_is_light():
    code = "import sys, workbench.data; print(sorted(m for m in ('timm', 'sklearn', 'PySide6') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def count_image_opens(monkeypatch) -> list[Path]:
    """Every file PIL opens from now on (the folder check decodes through ``Image.open``)."""
    opened: list[Path] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return opened


def test_a_reopened_folder_decodes_only_new_or_changed_files(folder: Path, tmp_path: Path, monkeypatch):
    """Checks are recorded per folder in the cache folder: a later process decodes only files whose
    size or modification time changed, and reports the same skipped files with the same reasons."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    (folder / "cats" / "notes.png").write_text("not an image, just text renamed to .png")
    first = open_images(folder_config(folder))
    assert list((tmp_path / "cache" / "image-checks").glob("*.json"))

    opened = count_image_opens(monkeypatch)
    monkeypatch.setattr(image_folder, "_checked_cache", {})  # as in a new process
    again = open_images(folder_config(folder))
    assert opened == []  # nothing decoded
    assert names(again.train) == names(first.train) and names(again.val) == names(first.val)
    assert again.problems == first.problems and "cats/notes.png: cannot decode" in "\n".join(again.problems)

    # A file rewritten in place (new size and time) is decoded again, and now found broken.
    changed = folder / "dogs" / "img01.jpg"
    changed.write_bytes(changed.read_bytes()[:40])
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    monkeypatch.setattr(image_folder, "_checked_cache", {})
    third = open_images(folder_config(folder))
    assert set(opened) == {changed}
    assert any(p.startswith("skipped dogs/img01.jpg: cannot decode") for p in third.problems)


@pytest.mark.parametrize("damage", ["garbage", "other_rules", "unwritable"])
def test_a_damaged_or_unwritable_check_record_only_costs_time(folder: Path, tmp_path: Path, monkeypatch, damage):
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache))
    expected = open_images(folder_config(folder))
    record = next((cache / "image-checks").glob("*.json"))
    if damage == "garbage":
        record.write_text('{"rules": ')
    elif damage == "other_rules":  # e.g. written under another Pillow: every file is decoded again
        record.write_text(record.read_text().replace("workbench-image-checks-1", "workbench-image-checks-0"))
    else:
        record.unlink()
        (cache / "image-checks").rmdir()
        (cache / "image-checks").write_text("a file where the folder should be")
    monkeypatch.setattr(image_folder, "_checked_cache", {})
    opened = count_image_opens(monkeypatch)
    images = open_images(folder_config(folder))
    assert names(images.train) == names(expected.train) and images.problems == expected.problems
    assert len(set(opened)) == 18  # every file decoded again
    if damage != "unwritable":
        assert json.loads(record.read_text())["rules"].startswith("workbench-image-checks-1")
