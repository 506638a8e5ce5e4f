"""Feature tables as training data: rows of numbers with a class label, for models whose input is (N, F).

The ``table`` dataset plugin reads a ``.npz`` or ``.csv`` file into a ``LabelledTable``;
``table_bundle`` checks it against the model's input and makes the datasets the Trainer reads.

Preprocessing, like an image's channels: each feature goes into the model as
``(x - spec.mean[i]) / spec.std[i]``. A model without its own values (an ONNX MLP without
metadata) has mean 0 and std 1: the features go in as they are. ``[data] standardize = true``
makes the training rows' per-feature mean and std the model's preprocessing (``spec.mean`` /
``spec.std``), so every export carries them (``config.json``, ONNX metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from workbench.digest import PartsDigest
from workbench.errors import DataError
from workbench.plan import DataConfig
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    from workbench.data import DataBundle

_FINGERPRINT_VERSION = "workbench-table-1"
# A feature whose training rows are (almost) all equal is centred but not scaled: dividing by ~0 blows it up.
_MIN_STD = 1e-12


@dataclass(eq=False)
class LabelledTable:
    """What the table dataset plugin's ``open`` returns: features and class indices, split.

    ``x_*`` are float32 (rows × features), ``y_*`` int64 class indices into ``classes``.
    ``width_note`` explains the width in the file's terms (" (the last of its 31 columns is the label)").
    """

    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    problems: list[str] = field(default_factory=list)
    source: str = ""
    skipped: int = 0
    width_note: str = ""

    @property
    def width(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def train_labels(self) -> list[int]:
        return [int(v) for v in self.y_train]

    @property
    def val_labels(self) -> list[int]:
        return [int(v) for v in self.y_val]

    def counts(self) -> dict[str, tuple[int, int]]:
        """class → (train rows, val rows)."""
        k = len(self.classes)
        train = np.bincount(self.y_train, minlength=k) if len(self.y_train) else np.zeros(k, np.int64)
        val = np.bincount(self.y_val, minlength=k) if len(self.y_val) else np.zeros(k, np.int64)
        return {c: (int(train[i]), int(val[i])) for i, c in enumerate(self.classes)}


class TableDataset(torch.utils.data.Dataset):
    """``(float32 feature vector, int label)`` pairs, preprocessed once; picklable for loader workers."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.y = [int(v) for v in y]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], self.y[index]

    @property
    def labels(self) -> list[int]:
        return list(self.y)


def model_width(spec: ModelSpec, table: LabelledTable) -> int:
    """The model's feature count F, or a ``DataError`` when it does not take (N, F) rows of this table's width."""
    size = tuple(spec.input_size)
    where = table.source or "the table"
    if len(size) != 1:
        shown = "×".join(map(str, size))
        raise DataError(f"{where} holds feature vectors ({table.width} features per row) but {spec.architecture} takes "
                        f"images ({shown}); a table needs a model whose input is (N, features), e.g. an ONNX MLP")
    width = int(size[0])
    if width != table.width:
        raise DataError(f"{spec.architecture} expects (N, {width}) feature vectors but {where} has {table.width} "
                        f"feature column{'s' if table.width != 1 else ''}{table.width_note}; the widths must match")
    return width


def table_bundle(table: LabelledTable, config: DataConfig, spec: ModelSpec) -> "DataBundle":
    """The table as training/validation datasets in the model's preprocessing.

    With ``config.standardize`` the training rows' mean/std become ``spec.mean``/``spec.std``
    (the spec is updated, so the run and its exports carry them).
    """
    from workbench.data import DataBundle

    width = model_width(spec, table)
    problems = list(table.problems)
    if config.standardize:
        mean, std, constant = training_statistics(table.x_train)
        if constant:
            problems.append(f"standardize: {_features(constant, width)} {'are' if len(constant) > 1 else 'is'} "
                            "constant in the training rows; centred, not scaled")
        old = _per_feature(spec, width, allow_any=True)
        if old is not None and not _identity(*old) and (old[0] != mean or old[1] != std):
            problems.append(f"standardize: the model's own input mean/std ({_short(old[0])} / {_short(old[1])}) "
                            "are replaced by the training rows' statistics")
        spec.mean, spec.std = mean, std
        how = "standardized with the training rows' mean/std (saved with the model)"
    else:
        per = _per_feature(spec, width)
        assert per is not None
        mean, std = per
        if _identity(mean, std):
            how = "fed as they are (no standardization)"
            hint = _scale_hint(table.x_train)
            if hint:
                problems.append(hint)
        else:
            how = "normalised with the model's own mean/std"
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    x_train = ((table.x_train - m) / s).astype(np.float32)
    x_val = ((table.x_val - m) / s).astype(np.float32)
    for split, x in (("training", x_train), ("validation", x_val)):
        if x.size and not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0][0])
            raise DataError(f"{table.source}: a {split} row ({row}) is not finite after normalising with the model's "
                            "mean/std; check the model's std values")
    return DataBundle(
        classes=list(table.classes),
        train=TableDataset(x_train, table.y_train),
        val=TableDataset(x_val, table.y_val) if len(table.y_val) else None,
        problems=problems,
        counts=table.counts(),
        fingerprint=table_fingerprint(table, mean, std),
        source=table.source or config.dataset,
        skipped=table.skipped,
        unit="rows",
        detail=f"{width} features {how}",
        augments=False,
    )


def training_statistics(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], list[int]]:
    """Per-feature mean and std (population) of the training rows, computed in float64; constant columns get std 1."""
    values = np.asarray(x, np.float64)
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = [int(i) for i in np.flatnonzero(std <= _MIN_STD * np.maximum(1.0, np.abs(mean)))]
    std[constant] = 1.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std), constant


def table_fingerprint(table: LabelledTable, mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """A stable hash of the rows, their split, the class names and the preprocessing."""
    digest = PartsDigest(_FINGERPRINT_VERSION)
    put = digest.put
    put("\n".join(table.classes))
    for split, x, y in (("train", table.x_train, table.y_train), ("val", table.x_val, table.y_val)):
        put(f"{split}:{x.shape}")
        put(np.ascontiguousarray(x, np.float32).tobytes())
        put(np.ascontiguousarray(y, np.int64).tobytes())
    put(repr((tuple(mean), tuple(std))))
    return digest.hexdigest()


def _per_feature(spec: ModelSpec, width: int, allow_any: bool = False
                 ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The spec's mean/std as one value per feature (a single value applies to all)."""
    mean, std = tuple(float(v) for v in spec.mean), tuple(float(v) for v in spec.std)
    if len(mean) == len(std) == width:
        return mean, std
    if len(mean) == len(std) == 1:
        return mean * width, std * width
    if allow_any:
        return None
    raise DataError(f"{spec.architecture}'s input mean/std have {len(mean)} and {len(std)} values for {width} "
                    "features; set [data] standardize = true, or one [model] mean/std value per feature")


def _identity(mean: tuple[float, ...], std: tuple[float, ...]) -> bool:
    return all(v == 0.0 for v in mean) and all(v == 1.0 for v in std)


def _scale_hint(x: np.ndarray) -> str | None:
    """A hint when raw feature scales differ so much that an MLP will train badly on them."""
    if not x.size:
        return None
    std = np.asarray(x, np.float64).std(axis=0)
    moving = std[std > 0]
    if not moving.size:
        return None
    largest, smallest = float(moving.max()), float(moving.min())
    if largest < 100.0 and largest / smallest < 1000.0:
        return None
    width = len(std)
    return (f"feature scales differ widely ({_features([int(np.argmax(std))], width)} has std {largest:.3g}, "
            f"{_features([int(np.flatnonzero(std == smallest)[0])], width)} {smallest:.3g}); "
            "[data] standardize = true usually trains better")


def _features(indices: list[int], width: int) -> str:
    """1-based feature numbers as a user counts columns: "feature 3 (of 30)", "features 1, 4 (of 30)"."""
    shown = ", ".join(str(i + 1) for i in indices[:5]) + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")
    return f"feature{'s' if len(indices) > 1 else ''} {shown} (of {width})"


def _short(values: tuple[float, ...]) -> str:
    shown = ", ".join(f"{v:.3g}" for v in values[:3])
    return f"[{shown}{', …' if len(values) > 3 else ''}]"

