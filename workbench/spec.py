"""Model metadata that travels with a backbone into every export (like timm's PretrainedCfg)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """What a user of the model needs to feed it and read its output."""

    architecture: str
    num_classes: int
    input_size: tuple[int, ...] = (3, 224, 224)  # (C, H, W); (F,) for a feature-vector model
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    classifier: str | None = None
    label_names: list[str] | None = None
    pretrained: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_pretrained_cfg(self) -> dict[str, Any]:
        """The ``pretrained_cfg`` block of a timm-style ``config.json``."""
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "num_classes": self.num_classes,
            "classifier": self.classifier,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data
