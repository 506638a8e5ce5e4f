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
    title = "Demo: handwritten digits (10 classes, 1,797 images; ship with scikit-learn)"
    path_kind = "none"

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
    images, target = _raw_digits()
    gray = np.rint(np.asarray(images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb.setflags(write=False)
    labels = np.asarray(target, dtype=np.int64)
    labels.setflags(write=False)
    return rgb, labels


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """(N×8×8 gray levels 0..16, N labels), exactly as ``sklearn.datasets.load_digits`` gives them.

    Read straight from the CSV scikit-learn ships: importing scikit-learn (and SciPy with it)
    costs 1-2 CPU-seconds, more than everything else a short run spends before its first step.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    csv = next((Path(f) / "datasets" / "data" / "digits.csv.gz" for f in folders
                if (Path(f) / "datasets" / "data" / "digits.csv.gz").is_file()), None)
    if csv is None:  # a scikit-learn that stores it elsewhere: let it read its own file
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(csv, "rt") as fh:
        data = np.loadtxt(fh, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
