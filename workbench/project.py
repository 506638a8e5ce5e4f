"""The project file: a FinetunePlan stored as TOML. Relative paths are relative to the file."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from workbench.atomic import atomic_write_text
from workbench.errors import ProjectError, WorkbenchError  # noqa: F401  (ProjectError re-exported)
from workbench.plan import (
    BN_POLICIES,
    OPTIMIZERS,
    SCHEDULERS,
    DataConfig,
    FinetunePlan,
    FreezeConfig,
    GroupConfig,
    ModelConfig,
    TrainConfig,
    UnfreezeStep,
)


def model_source_names() -> list[str]:
    """The model sources a project file may name: every installed model-source plugin."""
    from workbench.plugins import MODEL_SOURCES as GROUP
    from workbench.plugins import registry

    return registry().names(GROUP)


def load_project(path: str | Path) -> FinetunePlan:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProjectError(f"project file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path.name}: not valid TOML ({exc})") from None
    plan = plan_from_dict(data, where=path.name)
    plan.base_dir = path.parent.resolve()
    return plan


def save_project(plan: FinetunePlan, path: str | Path) -> None:
    """Write atomically: an interrupted save never leaves a half-written project."""
    import tomli_w

    path = Path(path).expanduser()
    rebased = _rebase(plan, path.parent.resolve())
    atomic_write_text(path, tomli_w.dumps(plan_to_dict(rebased)))
    plan.base_dir = path.parent.resolve()
    plan.model, plan.data = rebased.model, rebased.data


def _rebase(plan: FinetunePlan, new_dir: Path) -> FinetunePlan:
    """Keep relative paths pointing at the same files when the project moves to ``new_dir``."""
    import os

    out = plan.copy()

    def move(value: str | None) -> str | None:
        old = plan.resolve_path(value)
        if old is None or Path(value).is_absolute():
            return value
        try:
            return os.path.relpath(old.resolve(), new_dir)
        except ValueError:  # another drive on Windows
            return str(old.resolve())

    if out.model.source != "timm":
        out.model.name = move(out.model.name) or out.model.name
    out.data.path = move(out.data.path)
    out.data.val_path = move(out.data.val_path)
    out.base_dir = new_dir
    return out


def plan_from_dict(data: dict[str, Any], where: str = "project") -> FinetunePlan:
    known = {"model", "freeze", "groups", "unfreeze", "data", "train"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProjectError(f"{where}: unknown section(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    model = _build(ModelConfig, data.get("model", {}), f"{where} [model]")
    if model.source not in (sources := model_source_names()):
        raise ProjectError(f"{where} [model] source must be one of {', '.join(sources)}, not {model.source!r}")
    if model.input_size is not None:
        if len(model.input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in model.input_size):
            raise ProjectError(f"{where} [model] input_size must be [channels, height, width], not {model.input_size!r}")
        model.input_size = tuple(model.input_size)
    for key in ("mean", "std"):
        if getattr(model, key) is not None:
            setattr(model, key, tuple(float(v) for v in getattr(model, key)))
    if model.num_classes is not None and model.num_classes < 1:
        raise ProjectError(f"{where} [model] num_classes must be >= 1")
    freeze = _build(FreezeConfig, data.get("freeze", {}), f"{where} [freeze]")
    if freeze.batchnorm not in BN_POLICIES:
        raise ProjectError(f"{where} [freeze] batchnorm must be one of {', '.join(BN_POLICIES)}, not {freeze.batchnorm!r}")
    groups = [_build(GroupConfig, g, f"{where} [[groups]] #{i + 1}") for i, g in enumerate(data.get("groups", []))]
    for g in groups:
        if isinstance(g.modules, str):
            g.modules = [g.modules]
        if g.lr is not None and g.lr < 0:
            raise ProjectError(f"{where} group {g.name!r}: lr must be >= 0")
    unfreeze = [_build(UnfreezeStep, s, f"{where} [[unfreeze]] #{i + 1}") for i, s in enumerate(data.get("unfreeze", []))]
    data_cfg = _build(DataConfig, data.get("data", {}), f"{where} [data]")
    if not 0.0 <= data_cfg.val_split < 1.0:
        raise ProjectError(f"{where} [data] val_split must be in [0, 1), not {data_cfg.val_split}")
    train = _build(TrainConfig, data.get("train", {}), f"{where} [train]")
    if train.optimizer not in OPTIMIZERS:
        raise ProjectError(f"{where} [train] optimizer must be one of {', '.join(OPTIMIZERS)}, not {train.optimizer!r}")
    if train.scheduler not in SCHEDULERS:
        raise ProjectError(f"{where} [train] scheduler must be one of {', '.join(SCHEDULERS)}, not {train.scheduler!r}")
    if train.cache_features not in ("auto", True, False):
        raise ProjectError(f"{where} [train] cache_features must be \"auto\", true or false, not {train.cache_features!r}")
    if train.epochs < 1 or train.batch_size < 1:
        raise ProjectError(f"{where} [train] epochs and batch_size must be >= 1")
    return FinetunePlan(model, freeze, groups, unfreeze, data_cfg, train)


def plan_to_dict(plan: FinetunePlan) -> dict[str, Any]:
    out: dict[str, Any] = {"model": _dump(plan.model), "freeze": _dump(plan.freeze)}
    if plan.groups:
        out["groups"] = [_dump(g) for g in plan.groups]
    if plan.unfreeze:
        out["unfreeze"] = [_dump(s) for s in plan.unfreeze]
    out["data"] = _dump(plan.data)
    out["train"] = _dump(plan.train)
    return out


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ProjectError(f"{where} must be a table")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ProjectError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(names)})")
    try:
        obj = cls(**values)
    except TypeError as exc:
        raise ProjectError(f"{where}: {exc}") from None
    for f in fields(cls):
        value = getattr(obj, f.name)
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if value is None:
            continue
        if expected in ("int",) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProjectError(f"{where} {f.name} must be an integer, not {value!r}")
        if expected in ("float",) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ProjectError(f"{where} {f.name} must be a number, not {value!r}")
        if expected == "float":
            setattr(obj, f.name, float(value))
        if expected in ("str",) and not isinstance(value, str):
            raise ProjectError(f"{where} {f.name} must be a string, not {value!r}")
        if expected == "bool" and not isinstance(value, bool):
            raise ProjectError(f"{where} {f.name} must be true or false, not {value!r}")
        if expected.startswith("list[") and not isinstance(value, list):
            raise ProjectError(f"{where} {f.name} must be a list, not {value!r}")
        if expected.startswith("float |") and not isinstance(value, bool) and isinstance(value, (int, float)):
            setattr(obj, f.name, float(value))
    return obj


def _dump(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue  # TOML has no null: an absent key means "default"
        if isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
