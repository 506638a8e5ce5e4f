"""The inputs an export is proven on: the run's validation images (eval preprocessing) and calibration images.

Images are kept as uint8 N×H×W×C after the resize/crop steps of the model's evaluation transform;
``float_batch`` applies the last two steps (to-tensor scaling, mean/std) with the same torch ops
timm's transform uses, so the floats are bit-identical to what training validated on. The uint8 form
is exactly what a ``--with-preprocessing`` ONNX file takes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np

    from workbench.data import Item
    from workbench.plan import FinetunePlan

DEFAULT_CALIBRATION_IMAGES = 200
SYNTHETIC_INPUTS = 64


@dataclass
class ReportData:
    """Validation inputs with labels (or synthetic inputs without), and calibration inputs.

    ``val_uint8``/``calibration_uint8``: images (N, H, W, C) before scaling, or None for feature rows.
    ``val_float``/``calibration_float``: what the model takes (N, *input_size), float32.
    """

    description: str
    val_float: "np.ndarray"
    labels: "np.ndarray | None"  # None: synthetic inputs, agreement only
    val_uint8: "np.ndarray | None" = None
    calibration_float: "np.ndarray | None" = None
    calibration_uint8: "np.ndarray | None" = None
    calibration_source: str = ""
    is_images: bool = False
    notes: tuple[str, ...] = ()

    @property
    def synthetic(self) -> bool:
        return self.labels is None


def float_batch(uint8_nhwc: "np.ndarray", spec: ModelSpec) -> "np.ndarray":
    """uint8 N×H×W×C → normalised float32 N×C×H×W, as ToTensor + Normalize compute it."""
    import torch

    x = torch.from_numpy(uint8_nhwc).permute(0, 3, 1, 2).contiguous().float().div(255)
    mean = torch.as_tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub(mean).div(std).numpy()


def synthetic_data(spec: ModelSpec, reason: str, count: int = SYNTHETIC_INPUTS) -> ReportData:
    """Seeded standard-normal inputs: the report can only show agreement with PyTorch on them."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((count, *spec.input_size)).astype(np.float32)
    return ReportData(f"{count} synthetic inputs (standard normal; {reason}): agreement with PyTorch only, "
                      "no accuracy", x, None)


def plan_data(plan: "FinetunePlan", spec: ModelSpec, calibration_images: int | None = None,
              need_calibration: bool = False) -> ReportData:
    """The validation (and calibration) inputs of ``plan``'s data, in ``spec``'s evaluation preprocessing.

    ``calibration_images``: how many training images to calibrate on (None: up to
    ``DEFAULT_CALIBRATION_IMAGES``); a typed count above what the training set has is refused.
    """
    from workbench.data import LabelledImages, open_images
    from workbench.evaluate import check_labels

    images = open_images(plan.data, plan.base_dir)
    where = images.source or plan.data.dataset
    check_labels(spec.label_names, spec.num_classes, images.classes, where)
    if not isinstance(images, LabelledImages):
        return _table_data(images, plan, spec, where, calibration_images if need_calibration else 0)
    if not images.val:
        raise WorkbenchError(f"{where} has no validation images (val_split = 0 and no val_path): an export is "
                             "proven on the validation set; set [data] val_split above 0")
    channels = spec.input_size[0]
    if len(spec.input_size) != 3 or channels not in (1, 3):
        raise WorkbenchError(f"the model takes input {tuple(spec.input_size)}; exports are proven on 1- or "
                             "3-channel images only")
    val = _uint8_images(images.val, spec)
    labels = _labels(images.val)
    data = ReportData(f"{where}: {len(images.val):,} validation images, {len(images.classes)} classes "
                      "(the run's evaluation preprocessing)", float_batch(val, spec), labels, val_uint8=val,
                      is_images=True, notes=tuple(images.problems))
    if need_calibration:
        picked = _spread(images.train, _calibration_count(calibration_images, len(images.train), "images"))
        data.calibration_uint8 = _uint8_images(picked, spec)
        data.calibration_float = float_batch(data.calibration_uint8, spec)
        data.calibration_source = (f"{len(picked):,} of {len(images.train):,} training images, evenly spread "
                                   "(evaluation preprocessing)")
    return data


def _table_data(table: Any, plan: "FinetunePlan", spec: ModelSpec, where: str, calibration: int | None) -> ReportData:
    import numpy as np

    from workbench.tables import table_bundle

    bundle = table_bundle(table, plan.data, copy.deepcopy(spec))  # it may set mean/std on the spec it gets
    if bundle.val is None or len(bundle.val) == 0:
        raise WorkbenchError(f"{where} has no validation rows: an export is proven on the validation set; "
                             "set [data] val_split above 0")
    val = np.stack([np.asarray(bundle.val[i][0], dtype=np.float32) for i in range(len(bundle.val))])
    labels = np.asarray([int(bundle.val[i][1]) for i in range(len(bundle.val))], dtype=np.int64)
    data = ReportData(f"{where}: {len(val):,} validation rows, {len(bundle.classes)} classes", val, labels,
                      notes=tuple(bundle.problems))
    if calibration != 0:
        n_train = len(bundle.train)
        count = _calibration_count(calibration, n_train, "rows")
        picked = [round(i * n_train / count) for i in range(count)]
        data.calibration_float = np.stack([np.asarray(bundle.train[i][0], dtype=np.float32) for i in picked])
        data.calibration_source = f"{count:,} of {n_train:,} training rows, evenly spread"
    return data


def _calibration_count(asked: int | None, available: int, unit: str) -> int:
    if asked is None:
        return min(DEFAULT_CALIBRATION_IMAGES, available)
    if asked < 1:
        raise WorkbenchError(f"--calibration-images must be at least 1, got {asked}")
    if asked > available:
        raise WorkbenchError(f"--calibration-images {asked} is more than the {available:,} training {unit} "
                             f"the run has; use at most {available:,}")
    return asked


def _spread(items: list["Item"], count: int) -> list["Item"]:
    """``count`` items evenly spaced through ``items`` (sorted by class, so every class is drawn from)."""
    return [items[round(i * len(items) / count)] for i in range(count)]


def _labels(items: list["Item"]) -> "np.ndarray":
    import numpy as np

    return np.asarray([item.label for item in items], dtype=np.int64)


def _uint8_images(items: list["Item"], spec: ModelSpec) -> "np.ndarray":
    """Each image through the evaluation transform's resize/crop steps, as uint8 N×H×W×C."""
    import numpy as np

    resize_crop = _resize_crop_steps(spec)
    channels = spec.input_size[0]
    out = np.empty((len(items), spec.input_size[1], spec.input_size[2], channels), dtype=np.uint8)
    for i, item in enumerate(items):
        try:
            img = item.load()
        except WorkbenchError as exc:
            raise WorkbenchError(f"image {item.name} does not decode any more: {exc}") from None
        img = resize_crop(img.convert("L") if channels == 1 else img)
        array = np.asarray(img, dtype=np.uint8)
        out[i] = array[..., None] if array.ndim == 2 else array
    return out


def _resize_crop_steps(spec: ModelSpec) -> Any:
    """The evaluation transform without its last two steps (to-tensor, normalise)."""
    from torchvision import transforms

    from workbench.data import build_transform

    full = build_transform(spec, train=False, augment=False)
    steps = list(getattr(full, "transforms", []))
    names = [type(step).__name__ for step in steps[-2:]]
    if len(steps) < 2 or names[0] not in ("ToTensor", "MaybeToTensor") or names[1] != "Normalize":
        raise WorkbenchError(f"the evaluation transform of {spec.architecture} is not resize/crop + to-tensor + "
                             f"normalise ({', '.join(type(s).__name__ for s in steps)}); cannot split it")
    return transforms.Compose(steps[:-2])
