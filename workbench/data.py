"""The data pipeline: labelled images from a dataset plugin, model transforms, datasets.

``open_images`` asks the dataset plugin named by ``[data] dataset`` for a
``LabelledImages`` (class names, train/val items, skipped-file problems);
``open_data`` turns it into ``ImageDataset``s with the model's timm transforms and a
``fingerprint`` that a feature cache can be keyed on.

Importing this module never imports timm or scikit-learn.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from PIL import Image, ImageOps

from workbench.digest import PartsDigest
from workbench.errors import WorkbenchError
from workbench.image_checks import UnreadableImage, decode_problem, describe_error, size_problem
from workbench.image_dataset import ImageDataset, keeps_decoded
from workbench.plan import DataConfig
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    from workbench.tables import LabelledTable, TableDataset

# Bump when the fingerprint's recipe changes so old caches are not reused.
_FINGERPRINT_VERSION = "workbench-data-1"
@dataclass(eq=False, slots=True)
class Item:
    """One labelled image: a file (``path``), a member of a tar shard (``path`` + ``offset``) or in-memory
    pixels (``pixels``, H×W×3 uint8).

    ``name`` is what messages show (``cats/x.jpg``, ``digits#17``). ``size`` and
    ``mtime_ns`` are the file's stat when the dataset was opened (for the fingerprint); for a shard
    member ``size`` is the member's byte count and ``offset`` where its bytes start in the tar.
    ``problem``: why the item is known not to decode (found by an earlier read); it stays listed so
    that indices, split and fingerprint do not change when a bad file is found, and is skipped when read.
    Plain data only, so it pickles into DataLoader workers.
    """

    label: int
    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None
    size: int = 0
    mtime_ns: int = 0
    offset: int = -1
    problem: str | None = None

    def load(self) -> Image.Image:
        """The image as PIL RGB; ``UnreadableImage`` if the file is gone, too large or does not decode."""
        if self.pixels is not None:
            return Image.fromarray(self.pixels).convert("RGB")
        if self.problem is not None:
            raise UnreadableImage(self.name, self.problem)
        if self.path is None:
            raise WorkbenchError(f"item {self.name} has neither a path nor pixels")
        try:
            source: Path | io.BytesIO = self.path
            if self.offset >= 0:
                with open(self.path, "rb") as shard:
                    shard.seek(self.offset)
                    source = io.BytesIO(shard.read(self.size))
            with Image.open(source) as img:
                problem = size_problem(img.width, img.height)
                if problem is not None:
                    raise UnreadableImage(self.name, problem)
                img.load()
                return to_rgb(img)
        except UnreadableImage:
            raise
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise UnreadableImage(self.name, f"cannot read ({describe_error(exc, self.path)})") from exc
        except Exception as exc:  # Pillow raises many exception types on corrupt files
            if isinstance(source, io.BytesIO):
                source.seek(0)
            # The open-time check's wording (a full decode words a cut JPEG differently from its 1/8 draft).
            reason = decode_problem(source) or f"cannot decode ({describe_error(exc, self.path)})"
            raise UnreadableImage(self.name, reason) from exc

    def identity(self) -> bytes:
        """What the fingerprint hashes for this item (never whether it decodes: that is found out later)."""
        if self.pixels is not None:
            head = f"{self.label}|{self.name}|{self.pixels.shape}|{self.pixels.dtype}|".encode()
            return head + np.ascontiguousarray(self.pixels).tobytes()
        member = f"|{self.offset}" if self.offset >= 0 else ""
        return f"{self.label}|{self.path}|{self.size}|{self.mtime_ns}{member}".encode()


def load_image(item: Item) -> Image.Image:
    """``item.load()`` as a function (handy as a picklable callable)."""
    return item.load()


def to_rgb(img: Image.Image) -> Image.Image:
    """Any decoded PIL image as RGB, upright, transparency flattened onto white."""
    # Phone photos are stored sideways with an EXIF rotation tag; show them as viewers do.
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # convert("RGB") clips 16-bit values at 255 instead of scaling them.
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


@dataclass
class LabelledImages:
    """What a dataset plugin's ``open`` returns.

    ``problems`` are one-line messages for the user (files skipped and why);
    ``skipped`` counts the files left out; ``source`` says where the images came from.
    """

    classes: list[str]
    train: list[Item]
    val: list[Item]
    problems: list[str] = field(default_factory=list)
    source: str = ""
    skipped: int = 0
    # Where a read that finds an unreadable image records it (JSON lines), so the next open lists it.
    unreadable_log: Path | None = None

    def load(self, item: Item) -> Image.Image:
        return item.load()

    def counts(self) -> dict[str, tuple[int, int]]:
        """class → (train images, val images), not counting images known not to decode."""
        train = [0] * len(self.classes)
        val = [0] * len(self.classes)
        for item in self.train:
            train[item.label] += item.problem is None
        for item in self.val:
            val[item.label] += item.problem is None
        return {c: (train[i], val[i]) for i, c in enumerate(self.classes)}


def stratified_split(labels: Sequence[int], num_classes: int, val_split: float, seed: int,
                     class_names: Sequence[str] | None = None, unit: str = "image") -> tuple[list[int], list[int]]:
    """Indices (train, val): ``round(n * val_split)`` of each class's items go to val.

    ``labels`` must be in a stable order (sorted paths). Each class is shuffled by its own
    generator seeded from ``(seed, class)``, so the split is the same on every run and
    machine, and adding images to one class does not reshuffle the others.
    """
    check_val_split(val_split)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for index, label in enumerate(labels):
        by_class[label].append(index)
    train: list[int] = []
    val: list[int] = []
    for label, indices in enumerate(by_class):
        n_val = int(len(indices) * val_split + 0.5)
        if indices and n_val >= len(indices):
            raise WorkbenchError(f"val_split = {val_split:g} leaves class {names[label]!r} ({len(indices)} "
                                 f"{unit}{'s' if len(indices) != 1 else ''}) with no training {unit}s; "
                                 f"lower val_split or add {unit}s")
        # random.Random seeded with a str hashes it with SHA-512: stable across processes.
        shuffled = list(indices)
        random.Random(f"{seed}/{names[label]}").shuffle(shuffled)
        val.extend(shuffled[:n_val])
        train.extend(shuffled[n_val:])
    return sorted(train), sorted(val)


def check_val_split(val_split: float) -> None:
    if not 0.0 <= float(val_split) < 1.0:
        raise WorkbenchError(f"val_split must be at least 0 and below 1, got {val_split:g}")


def open_images(config: DataConfig, base_dir: Path | None = None) -> "LabelledImages | LabelledTable":
    """The labelled images (or feature table) ``config`` describes, from the dataset plugin ``config.dataset``."""
    from workbench.plugins import DATASETS, registry
    from workbench.tables import LabelledTable

    plugin = registry().get(DATASETS, config.dataset)
    images = plugin.open(config, base_dir)
    if isinstance(images, LabelledImages):
        if config.standardize:
            raise WorkbenchError("[data] standardize = true applies to feature tables (dataset = \"table\"); "
                                 "images are normalised with the model's mean/std")
        labels = [item.label for item in (*images.train, *images.val)]
        names = [item.name for item in (*images.train, *images.val)]
        _check_labelled(images, labels, names, bool(images.val), config.dataset, "image")
    elif isinstance(images, LabelledTable):
        labels = images.train_labels + images.val_labels
        names = [f"row {i}" for i in range(len(labels))]
        _check_labelled(images, labels, names, len(images.val_labels) > 0, config.dataset, "row")
    else:
        raise WorkbenchError(f"dataset plugin {config.dataset!r} returned {type(images).__name__}, "
                             "not LabelledImages or LabelledTable")
    return images


def _check_labelled(images: "LabelledImages | LabelledTable", labels: list[int], names: list[str], has_val: bool,
                    dataset: str, unit: str) -> None:
    """Guarantees every caller relies on, whatever plugin produced the images or rows."""
    where = images.source or dataset
    if len(images.classes) < 2:
        found = f" ({images.classes[0]})" if images.classes else ""
        raise WorkbenchError(f"{where}: need at least 2 classes to train a classifier, found "
                             f"{len(images.classes)}{found}")
    if len(set(images.classes)) != len(images.classes):
        raise WorkbenchError(f"{where}: class names are not unique")
    for label, name in zip(labels, names):
        if not 0 <= label < len(images.classes):
            raise WorkbenchError(f"{where}: item {name} has label {label} outside 0..{len(images.classes) - 1}")
    counts = images.counts()
    empty = [c for c, (n_train, _) in counts.items() if n_train == 0]
    if empty:
        raise WorkbenchError(f"{where}: class {empty[0]!r} has no training {unit}s")
    if has_val:
        for c in (c for c, (_, n_val) in counts.items() if n_val == 0):
            warning = f"warning: class {c!r} has no validation {unit}; validation accuracy ignores it"
            if warning not in images.problems:
                images.problems.append(warning)


def build_transform(spec: ModelSpec, train: bool, augment: bool) -> Callable[[Image.Image], torch.Tensor]:
    """timm's transform for ``spec``: random augmentation only when ``train and augment``."""
    import timm.data

    return timm.data.create_transform(
        input_size=cast(Any, tuple(spec.input_size)),
        is_training=train and augment,
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        interpolation=spec.interpolation,
        crop_pct=spec.crop_pct,
        crop_mode=spec.crop_mode,
    )


@dataclass
class DataBundle:
    """Datasets ready for training, with counts and a fingerprint for caching."""

    classes: list[str]
    train: "ImageDataset | TableDataset"
    val: "ImageDataset | TableDataset | None"
    problems: list[str]
    counts: dict[str, tuple[int, int]]
    fingerprint: str
    source: str = ""
    skipped: int = 0
    unit: str = "images"  # what one item is, for messages ("rows" for a feature table)
    detail: str = ""  # e.g. a table's width and preprocessing
    augments: bool = True  # False: the data has no augmentation (feature rows), whatever [train] augment says

    def summary(self) -> str:
        n_train = len(self.train)
        val = f"{len(self.val):,} val {self.unit}" if self.val is not None else f"no validation {self.unit}"
        detail = f"; {self.detail}" if self.detail else ""
        return (f"{self.source}: {len(self.classes)} classes, {n_train:,} train / {val}{detail}; "
                f"{self.skipped:,} skipped")


def open_data(config: DataConfig, base_dir: Path | None, spec: ModelSpec, augment: bool,
              images: "LabelledImages | LabelledTable | None" = None) -> DataBundle:
    """Open the images ``config`` describes (or take ``images``, opened from it already) with the model's transforms.

    A feature table (``LabelledTable``) becomes rows in the model's preprocessing instead
    (``workbench.tables.table_bundle``; with ``[data] standardize`` it sets ``spec.mean/std``).
    """
    from workbench.tables import LabelledTable, table_bundle

    channels = spec.input_size[0]
    if len(spec.input_size) != 1 and channels not in (1, 3):
        raise WorkbenchError(f"the model takes {channels}-channel input; only 1 (grayscale) or 3 (RGB) "
                             "channel images are supported")
    if images is None:
        images = open_images(config, base_dir)
    if isinstance(images, LabelledTable):
        return table_bundle(images, config, spec)
    if len(spec.input_size) == 1:
        raise WorkbenchError(f"{spec.architecture} takes feature vectors (N, {channels}), not images: "
                             "train it on a feature table ([data] dataset = \"table\", path = a .npz or .csv file)")
    train_tf = build_transform(spec, train=True, augment=augment)
    eval_tf = build_transform(spec, train=False, augment=False)
    mode = "L" if channels == 1 else "RGB"
    keep = keeps_decoded(len(images.train) + len(images.val), spec)
    return DataBundle(
        classes=list(images.classes),
        train=ImageDataset(images.train, train_tf, mode, keep_decoded=keep and not augment,
                           deterministic=not augment, unreadable_log=images.unreadable_log),
        val=ImageDataset(images.val, eval_tf, mode, keep_decoded=keep, deterministic=True,
                         unreadable_log=images.unreadable_log) if images.val else None,
        problems=list(images.problems),
        counts=images.counts(),
        fingerprint=fingerprint(images, spec, train_tf, eval_tf, augment),
        source=images.source or config.dataset,
        skipped=images.skipped,
    )


def fingerprint(images: LabelledImages, spec: ModelSpec, train_tf: Any, eval_tf: Any, augment: bool) -> str:
    """A stable hash of the items, their split, the class names and the transforms."""
    digest = PartsDigest(_FINGERPRINT_VERSION)
    put = digest.put
    put("\n".join(images.classes))
    for split, items in (("train", images.train), ("val", images.val)):
        put(f"{split}:{len(items)}")
        for item in items:
            put(item.identity())
    # The transform repr rounds mean/std to 4 digits; the spec fields are exact.
    put(repr(train_tf))
    put(repr(eval_tf))
    put(repr((augment, tuple(spec.input_size), tuple(spec.mean), tuple(spec.std), spec.interpolation,
              spec.crop_pct, spec.crop_mode)))
    return digest.hexdigest()


def thumbnails(images: "LabelledImages | LabelledTable", per_class: int, size: int) -> list[tuple[str, Image.Image]]:
    """Up to ``per_class`` square ``size``-pixel thumbnails per class, training images first (none for a table)."""
    if not isinstance(images, LabelledImages):
        return []
    picked: list[list[Image.Image]] = [[] for _ in images.classes]
    for item in (*images.train, *images.val):
        if len(picked[item.label]) < per_class and item.problem is None:
            try:
                picked[item.label].append(item.load())
            except UnreadableImage:
                continue  # a file not checked yet that does not decode: show another
        if all(len(p) >= per_class for p in picked):
            break
    out: list[tuple[str, Image.Image]] = []
    for label, imgs in enumerate(picked):
        for img in imgs:
            # Upscale tiny images (the 8×8 digits) with hard pixel edges instead of a blur.
            smooth = min(img.size) >= size
            resample = Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST
            out.append((images.classes[label], ImageOps.fit(img, (size, size), method=resample)))
    return out


def check_num_classes(bundle_classes: list[str], model_num_classes: int | None, adapt: bool) -> int:
    """The number of outputs to train with, or a ``WorkbenchError`` explaining the mismatch.

    ``model_num_classes`` None means the head is built for the data; ``adapt`` lets a head
    of the wrong size be replaced.
    """
    n = len(bundle_classes)
    if model_num_classes is None or model_num_classes == n or adapt:
        return n
    shown = ", ".join(bundle_classes) if n <= 8 else ", ".join(bundle_classes[:6]) + f", … {bundle_classes[-1]}"
    head = ("the model has no classifier head" if model_num_classes == 0
            else f"the model's head has {model_num_classes} output{'s' if model_num_classes != 1 else ''}")
    raise WorkbenchError(f"the data has {n} classes ({shown}) but {head}; "
                         f"set [model] num_classes = {n} or pass --adapt-head")
