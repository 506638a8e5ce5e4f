"""The fine-tuning plan: the serialisable recipe a user edits (by clicking or in TOML).

Selectors used in ``frozen``, ``unfrozen`` and group ``modules`` lists:

- ``layer1.0.conv1``   a module path as ``workbench inspect`` prints it ("" is the whole model);
- ``cls_token``        a parameter's full name (for parameters a module owns directly);
- ``layer*.bn?``       a glob over module paths (any of ``*?[``);
- ``re:^blocks\\.\\d$`` a regular expression over module paths (``re.fullmatch``);
- ``type:BatchNorm2d`` every module of that class.

Freezing rule: a parameter follows the deepest selector that covers it; when a path is
both frozen and unfrozen, unfrozen wins. So ``frozen = [""]`` with ``unfrozen = ["fc"]``
is a linear probe, and a child can be unfrozen inside a frozen parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BN_POLICIES = ("freeze", "train", "eval")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("constant", "cosine", "onecycle")


@dataclass
class ModelConfig:
    """Where the backbone comes from. ``name`` is a timm name or a file path."""

    source: str = "timm"
    name: str = "resnet18"
    arch: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    label_names: list[str] | None = None


@dataclass
class FreezeConfig:
    frozen: list[str] = field(default_factory=list)
    unfrozen: list[str] = field(default_factory=list)
    batchnorm: str = "freeze"


@dataclass
class GroupConfig:
    """An optimizer parameter group. ``lr``/``weight_decay`` of None mean the [train] defaults."""

    name: str
    modules: list[str]
    lr: float | None = None
    weight_decay: float | None = None


@dataclass
class UnfreezeStep:
    """At the start of ``epoch`` (0-based), these groups become trainable at their LRs."""

    epoch: int
    groups: list[str]


@dataclass
class DataConfig:
    path: str | None = None
    val_path: str | None = None
    val_split: float = 0.2
    seed: int = 0
    dataset: str = "folder"  # "folder" or a dataset plugin name such as "digits"


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    device: str = "auto"
    amp: str = "auto"  # "auto" | "bf16" | "fp16" | "off"
    seed: int = 0
    augment: bool = True
    cache_features: str | bool = "auto"
    num_workers: int | None = None
    compile: bool = False  # torch.compile the part that trains (the head when the trunk is cached)


@dataclass
class FinetunePlan:
    """Everything needed to reproduce a fine-tuning run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    groups: list[GroupConfig] = field(default_factory=list)
    unfreeze: list[UnfreezeStep] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    head: Any = None  # workbench.surgery.HeadSpec from [head]: cut the model and attach a new head
    # Folder relative paths in the plan are resolved against (the project file's folder).
    base_dir: Path | None = None

    def resolve_path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)

    def copy(self) -> "FinetunePlan":
        import copy

        return copy.deepcopy(self)
