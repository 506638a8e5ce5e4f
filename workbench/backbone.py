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

    ``source`` is ``"timm"``, ``"onnx"``, ``"checkpoint"`` (or a third-party source's
    name); ``None`` lets the registry pick the first source whose ``can_load`` accepts.
    """

    ref: str
    source: str | None = None
    arch: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

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
        if self.source in ("onnx", "checkpoint"):
            from pathlib import Path

            return f"weights from {Path(self.ref).name}"
        return "pretrained weights" if self.spec.pretrained else "random init"
