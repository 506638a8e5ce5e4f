"""The fine-tuning plan: the serialisable recipe a user edits (by clicking or in TOML).

Selectors used in ``frozen``, ``unfrozen`` and group ``modules`` lists:

- ``layer1.0.conv1``   a module path as ``workbench inspect`` prints it ("" is the whole model);
- ``cls_token``        a parameter's full name (for parameters a module owns directly);
- ``layer*.bn?``       a glob over module paths (any of ``*?[``);
- ``re:^blocks\\.\\d$`` a regular expression over module paths (``re.fullmatch``);
- ``type:BatchNorm2d`` every module of that class;
- ``param:bias``       every parameter with that own name (``param:BatchNorm2d.weight``: of that class's modules);
  a parameter selector never unfreezes a module, so a BatchNorm's statistics stay as its module's mark says.

Freezing rule: a parameter follows the deepest selector that covers it; when a path is
both frozen and unfrozen, unfrozen wins. So ``frozen = [""]`` with ``unfrozen = ["fc"]``
is a linear probe, and a child can be unfrozen inside a frozen parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, model_validator

from workbench.schema_sections import KEY_HINTS, section

# Each choice list is stated once, as the Literal type its key has; the tuples are read from it.
BatchNormPolicy = Literal["freeze", "train", "eval"]
Optimizer = Literal["adamw", "sgd"]
Scheduler = Literal["constant", "cosine", "onecycle"]
Amp = Literal["auto", "bf16", "fp16", "off", "none", "false", "fp32"]
BN_POLICIES: tuple[str, ...] = get_args(BatchNormPolicy)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
AMP_SETTINGS: tuple[str, ...] = get_args(Amp)


def model_source_names() -> list[str]:
    """The model sources a plan may name: every installed model-source plugin (entry-point names, not loaded)."""
    from workbench.plugins import MODEL_SOURCES as GROUP
    from workbench.plugins import registry

    return registry().names(GROUP)
MAX_CHANNELS = 64
MAX_SIDE = 8192  # larger inputs need tens of GB for one activation map
MAX_SEED = 2**32 - 1  # numpy and DataLoader workers take 32-bit seeds
MAX_CLASSES = 1_000_000
MAX_EPOCHS = 100_000

# The schema is the single source of truth: types, ranges and defaults of every project-file key
# live in these annotations; workbench.project validates TOML through them and `workbench schema`
# publishes them as JSON Schema (the section machinery: workbench.schema_sections).


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _int_as_list(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
InputSize = Annotated[tuple[Channels, Side, Side], BeforeValidator(_as_tuple),
                      Field(description="[channels, height, width] of one input image")]
Mean = Annotated[tuple[Finite, ...], BeforeValidator(_as_tuple),
                 Field(min_length=1, max_length=MAX_CHANNELS, description="per-channel mean for normalisation")]
Std = Annotated[tuple[Annotated[float, Field(gt=0.0, allow_inf_nan=False)], ...], BeforeValidator(_as_tuple),
                Field(min_length=1, max_length=MAX_CHANNELS, description="per-channel std (> 0) for normalisation")]
Selectors = Annotated[list[str], BeforeValidator(_as_list)]


KEY_HINTS.update({
    "input_size": f"[channels, height, width] with 1-{MAX_CHANNELS} channels and sides 1-{MAX_SIDE}",
    "mean": "a list of one finite number per channel",
    "std": "a list of one positive number per channel",
    "cache_features": '"auto", true or false',
    "cut": 'a module path such as "layer3"',
})


@section
class ModelConfig:
    """Where the backbone comes from. ``name`` is a timm name or a file path."""

    source: str = "timm"  # any installed model-source plugin (checked against the registry)
    name: Annotated[str, Field(min_length=1)] = "resnet18"
    arch: str | None = None
    pretrained: bool = False
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)] | None = None
    input_size: InputSize | None = None
    mean: Mean | None = None
    std: Std | None = None
    label_names: list[str] | None = None

    @model_validator(mode="after")
    def _source_installed(self) -> "ModelConfig":
        sources = model_source_names()
        if self.source not in sources:
            raise ValueError(f"source must be one of {', '.join(sources)}, not {self.source!r}")
        return self

    @model_validator(mode="after")
    def _channels_agree(self) -> "ModelConfig":
        channels = {len(v) for v in (self.mean, self.std) if v is not None}
        if self.input_size is not None:
            channels.add(self.input_size[0])
        if len(channels) > 1:
            raise ValueError(f"mean, std and input_size disagree on the number of channels "
                             f"(mean {self.mean}, std {self.std}, input_size {self.input_size})")
        return self


@section
class FreezeConfig:
    frozen: Selectors = field(default_factory=list)
    unfrozen: Selectors = field(default_factory=list)
    batchnorm: BatchNormPolicy = "freeze"


@section
class GroupConfig:
    """An optimizer parameter group. ``lr``/``weight_decay`` of None mean the [train] defaults."""

    name: Annotated[str, Field(min_length=1)]
    modules: Selectors
    lr: NonNegative | None = None
    weight_decay: NonNegative | None = None


@section
class UnfreezeStep:
    """At the start of ``epoch`` (0-based), these groups become trainable at their LRs.

    ``lr``: from that epoch on, every group (those training already included) trains at this one LR,
    on the same schedule — LP-FT's fine-tune phase, where the probed head slows down with the body.
    """

    epoch: Annotated[int, Field(ge=0)]
    groups: Selectors
    lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False,
                               description="from this epoch on, every group trains at this LR")] | None = None


ADAPTER_METHODS = ("lora",)
MAX_RANK = 4096


@section
class AdapterConfig:
    """[adapters]: low-rank adapters (Hugging Face peft) on the modules the selectors name.

    The adapted modules' own weights are frozen and stay bit-identical; the adapters train.
    ``alpha`` defaults to ``rank`` (scale alpha/rank = 1). ``max_share``: a pattern adapts only the
    layers whose rank-``rank`` adapter has at most this share of the layer's weight (a rank-8 update of
    a 16 → 96 convolution has 58% of its parameters: not a low-rank update); the narrower layers stay frozen.
    """

    modules: Annotated[Selectors, Field(min_length=1)]
    method: Literal["lora"] = "lora"
    rank: Annotated[int, Field(ge=1, le=MAX_RANK)] = 8
    alpha: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    max_share: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False,
                                      description="adapt only layers whose adapter has at most this share of "
                                                  "the layer's weight, e.g. 0.1")] | None = None

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank


Pool = Literal["avg", "max", "avgmax", "flatten", "none"]
Activation = Literal["relu", "gelu", "silu", "tanh", "none"]
POOLS: tuple[str, ...] = get_args(Pool)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


@section
class HeadSpec:
    """[head]: cut the model at ``cut`` and attach a new head (``cut`` absent: at the classifier's input).

    The cut path is checked against a model when the head is attached (``workbench.surgery``).
    """

    cut: Annotated[str, Field(min_length=1, pattern=r"\S")] | None = None
    pool: Pool = "avg"
    hidden: Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_int_as_list),
                      Field(description="sizes of the hidden layers, e.g. [128]")] = field(default_factory=list)
    activation: Activation = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pool": self.pool, "hidden": list(self.hidden),
                               "activation": self.activation, "dropout": self.dropout}
        if self.cut is not None:
            out["cut"] = self.cut
        return out


HEAD_KEYS = tuple(f.name for f in fields(HeadSpec))


@section
class DataConfig:
    path: str | None = None
    val_path: str | None = None
    val_split: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    seed: Seed = 0
    dataset: Annotated[str, Field(min_length=1)] = "folder"  # "folder", "digits", "table" or another dataset plugin
    # Feature tables only: feed (x - mean) / std with the training rows' per-feature mean/std (saved with the model).
    standardize: bool = False


@section
class TrainConfig:
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 5
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    optimizer: Optimizer = "adamw"
    scheduler: Scheduler = "cosine"
    lr: NonNegative = 1e-3
    weight_decay: NonNegative = 0.01
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    warmup_epochs: NonNegative = 0.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    grad_clip: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    device: str = "auto"
    amp: Amp = "auto"
    seed: Seed = 0
    augment: bool = True
    cache_features: Literal["auto"] | bool = "auto"
    num_workers: Annotated[int, Field(ge=0, le=256)] | None = None
    compile: bool = False  # torch.compile the part that trains (the head when the trunk is cached)
    # Layer-wise LR decay: a group without its own lr trains at lr × layer_decay^(layers between it and the head).
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    # Callbacks from installed packages (entry points in workbench.callbacks), run with the built-in ones in
    # their declared order; each saves and restores its own state across --resume.
    callbacks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _callbacks_installed(self) -> "TrainConfig":
        from workbench.plugins import CALLBACKS, registry

        if self.callbacks:
            installed = registry().names(CALLBACKS)
            unknown = [name for name in self.callbacks if name not in installed]
            if unknown:
                raise ValueError(f"callbacks: no installed callback named {unknown[0]!r}; installed: "
                                 f"{', '.join(installed) or 'none (a package adds one through the workbench.callbacks entry point group)'}")
            if len(set(self.callbacks)) != len(self.callbacks):
                raise ValueError("callbacks: each callback may be named once")
        return self


# What a [[compare]] table may override, and the section whose schema checks it (the table's own
# fields are derived from these, so a limit is stated once: e.g. epochs <= TrainConfig's maximum).
COMPARE_OVERRIDES = {"frozen": "freeze", "unfrozen": "freeze", "batchnorm": "freeze",
                     "lr": "train", "epochs": "train", "optimizer": "train"}
_SECTION_TYPES: dict[str, Any] = {"freeze": FreezeConfig, "train": TrainConfig}


def _override_field(key: str) -> Any:
    """The annotation of ``key`` in its section, made optional (absent: the strategy's value is kept)."""
    info = _SECTION_TYPES[COMPARE_OVERRIDES[key]].__pydantic_fields__[key]
    inner = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return inner | None


@section
class CompareTable:
    """[[compare]]: a named strategy for ``workbench compare``: a built-in strategy (default ``plan``, the
    project as it is) with overrides, each checked by the schema of its section ([freeze] or [train])."""

    name: Annotated[str, Field(min_length=1)]
    strategy: Annotated[str, Field(min_length=1)] = "plan"
    frozen: _override_field("frozen") = None  # type: ignore[valid-type]
    unfrozen: _override_field("unfrozen") = None  # type: ignore[valid-type]
    batchnorm: _override_field("batchnorm") = None  # type: ignore[valid-type]
    lr: _override_field("lr") = None  # type: ignore[valid-type]
    epochs: _override_field("epochs") = None  # type: ignore[valid-type]
    optimizer: _override_field("optimizer") = None  # type: ignore[valid-type]

    def overrides(self) -> dict[str, Any]:
        """The keys this table sets, with their values."""
        return {k: getattr(self, k) for k in COMPARE_OVERRIDES if getattr(self, k) is not None}


@dataclass
class FinetunePlan:
    """Everything needed to reproduce a fine-tuning run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    groups: list[GroupConfig] = field(default_factory=list)
    unfreeze: list[UnfreezeStep] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapters: AdapterConfig | None = None  # [adapters]: LoRA on selected modules (workbench.adapters)
    head: HeadSpec | None = None  # [head]: cut the model and attach a new head (workbench.surgery)
    compare: list[CompareTable] = field(default_factory=list)  # [[compare]]: strategies for `workbench compare`
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
