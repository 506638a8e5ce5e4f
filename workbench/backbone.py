"""A loaded model plus its metadata: what every model-source plugin returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class LoadRequest:
    """What the user asked to load.

    ``source`` names an installed model-source plugin; ``None`` lets the registry pick the
    first source whose ``can_load`` accepts (:func:`workbench.sources.source_for`).
    """

    ref: str
    source: str | None = None
    arch: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        from numbers import Integral

        from workbench.errors import ModelLoadError
        from workbench.plan import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE

        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, Integral) or not 1 <= n <= MAX_CLASSES):
            raise ModelLoadError(f"num_classes must be a whole number from 1 to {MAX_CLASSES:,}, not {n!r}")
        size = self.input_size
        if size is not None and (len(size) != 3 or not all(isinstance(v, Integral) and v >= 1 for v in size)
                                 or size[0] > MAX_CHANNELS or max(size[1:]) > MAX_SIDE):
            raise ModelLoadError(f"input_size must be (channels, height, width) with 1-{MAX_CHANNELS} channels "
                                 f"and sides 1-{MAX_SIDE}, not {size!r}")

    @property
    def path(self) -> Path:
        return Path(self.ref).expanduser()


@dataclass
class Backbone:
    """An ``nn.Module`` ready to fine-tune, with the metadata that must travel with it.

    ``notices`` are one-line messages the user should see (e.g. "pretrained weights
    not available, using random init"); ``report`` holds source-specific facts
    (for ONNX: opset, operator types, trainable weights, parity with onnxruntime).
    """

    module: "nn.Module"
    spec: ModelSpec
    source: str
    ref: str
    notices: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.architecture

    @property
    def weights(self) -> str:
        """Where the module's current weights came from, in words."""
        from workbench.sources import capabilities

        if capabilities(self.source).takes_files:
            return f"weights from {Path(self.ref).name}"
        return "pretrained weights" if self.spec.pretrained else "random init"
