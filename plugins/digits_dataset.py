"""Built-in demo dataset: scikit-learn's 1,797 handwritten 8×8 digits (ships with sklearn).

Each digit becomes a tiny RGB image (gray levels 0..16 scaled to 0..255, repeated in
three channels); the model's transform upsamples it to the input size.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from workbench.data import Item, LabelledImages, stratified_split
from workbench.errors import WorkbenchError
from workbench.plan import DataConfig

CLASSES = [str(d) for d in range(10)]


class DigitsSource:
    name = "digits"

    def open(self, config: DataConfig, base_dir: Path | None = None) -> LabelledImages:
        if config.val_path:
            raise WorkbenchError("the digits dataset makes its own validation split; remove [data] val_path "
                                 "and use val_split")
        pixels, labels = digits_arrays()
        items = [Item(label=int(labels[i]), name=f"digits#{i}", pixels=pixels[i]) for i in range(len(labels))]
        train_idx, val_idx = stratified_split([it.label for it in items], len(CLASSES), config.val_split,
                                              config.seed, CLASSES)
        return LabelledImages(CLASSES.copy(), [items[i] for i in train_idx], [items[i] for i in val_idx],
                              [], "digits", 0)


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(N×8×8×3 uint8 images, N int labels), loaded once per process."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    gray = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb.setflags(write=False)
    labels = np.asarray(bunch.target, dtype=np.int64)
    labels.setflags(write=False)
    return rgb, labels
