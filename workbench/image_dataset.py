"""The dataset training reads: decoded, transformed images with their labels, kept in memory when they fit.

An image that does not decode at its first read is recorded and replaced by the next readable image of
its class (``workbench.image_checks`` words the reason), so batches stay the same on every run and resume.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from workbench.errors import WorkbenchError
from workbench.image_checks import UnreadableImage, record_unreadable
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    from workbench.data import Item

# Transformed images kept in memory when the transform is deterministic (no augmentation) and they fit:
# the plain loop people write holds its tensors the same way. Larger datasets are decoded every epoch.
DECODED_LIMIT_BYTES = int(os.environ.get("WORKBENCH_DECODED_BYTES", 512 << 20))


class ImageDataset(torch.utils.data.Dataset):
    """``(float32 C×H×W tensor, int label)`` pairs; picklable for DataLoader workers.

    ``keep_decoded`` (only for a deterministic transform): each image is decoded and transformed once,
    on first use in the main process, and kept in one tensor block; later epochs read it from memory
    and need no loader workers. ``deterministic`` says the transform draws no random numbers.
    """

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], Any], mode: str = "RGB",
                 keep_decoded: bool = False, deterministic: bool = False, unreadable_log: Path | None = None) -> None:
        self.items = list(items)
        self.transform = transform
        self.mode = mode
        self.deterministic = deterministic or keep_decoded
        self.keep_decoded = keep_decoded
        self.unreadable_log = unreadable_log
        self._block: torch.Tensor | None = None
        self._filled: torch.Tensor | None = None
        self._reported: set[int] = set()  # unreadable items this process has recorded already

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._filled is not None and self._block is not None and bool(self._filled[index]):
            return self._block[index], self.items[index].label
        item = self.items[index]
        img = self._load_or_substitute(index)
        if self.mode != "RGB":
            img = img.convert(self.mode)
        tensor = self.transform(img)
        if self.keep_decoded and torch.utils.data.get_worker_info() is None:  # a worker's copy would be lost
            if self._block is None:
                self._block = torch.empty((len(self.items), *tensor.shape), dtype=tensor.dtype)
                self._filled = torch.zeros(len(self.items), dtype=torch.bool)
            assert self._filled is not None
            self._block[index] = tensor
            self._filled[index] = True
        return tensor, item.label

    def _load_or_substitute(self, index: int) -> Image.Image:
        """Item ``index``'s image; if it does not decode, it is recorded and skipped: the next readable
        image of its class (in index order) stands in, so every run and resume sees the same batches."""
        n = len(self.items)
        label = self.items[index].label
        last: UnreadableImage | None = None
        for step in range(n):
            other = (index + step) % n
            if self.items[other].label != label:
                continue
            try:
                return self.items[other].load()
            except UnreadableImage as exc:
                last = exc
                self._record_unreadable(other, exc)
        assert last is not None
        raise WorkbenchError(f"no image of this class decodes (the last tried: {last}); "
                             "remove or replace the unreadable files") from last

    def _record_unreadable(self, index: int, exc: UnreadableImage) -> None:
        item = self.items[index]
        if item.problem is not None or index in self._reported:
            return  # reported when the data was opened, or already by this process
        self._reported.add(index)
        logging.getLogger("workbench.data").warning("skipped %s: %s", item.name, exc.reason)
        if self.unreadable_log is not None:
            record_unreadable(self.unreadable_log, item, exc.reason)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_block": None, "_filled": None}  # workers decode their own share

    @property
    def labels(self) -> list[int]:
        return [item.label for item in self.items]


def keeps_decoded(count: int, spec: ModelSpec) -> bool:
    """Whether ``count`` transformed images of ``spec``'s input size fit the in-memory budget."""
    c, h, w = spec.input_size
    return count * c * h * w * 4 <= DECODED_LIMIT_BYTES
