"""The project file: a FinetunePlan stored as TOML. Relative paths are relative to the file."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from workbench.atomic import atomic_write_text
from workbench.errors import ProjectError, WorkbenchError  # noqa: F401  (ProjectError re-exported)
from workbench.plan import (  # noqa: F401
    AdapterConfig,
    CompareTable,
    DataConfig,
    FinetunePlan,
    FreezeConfig,
    GroupConfig,
    HeadSpec,
    ModelConfig,
    TrainConfig,
    UnfreezeStep,
)
from workbench.schema_sections import describe_error, did_you_mean, section_from_table  # noqa: F401


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
    rebased = rebase_plan(plan, path.parent.resolve())
    atomic_write_text(path, tomli_w.dumps(plan_to_dict(rebased)))
    plan.base_dir = path.parent.resolve()
    plan.model, plan.data = rebased.model, rebased.data


def rebase_plan(plan: FinetunePlan, new_dir: Path) -> FinetunePlan:
    """Keep relative paths pointing at the same files when the project moves to ``new_dir``."""
    import os

    from workbench.sources import capabilities

    out = plan.copy()

    def move(value: str | None) -> str | None:
        old = plan.resolve_path(value)
        if old is None or value is None or Path(value).is_absolute():
            return value
        try:
            return os.path.relpath(old.resolve(), new_dir)
        except ValueError:  # another drive on Windows
            return str(old.resolve())

    if capabilities(out.model.source).takes_files:
        out.model.name = move(out.model.name) or out.model.name
    out.data.path = move(out.data.path)
    out.data.val_path = move(out.data.val_path)
    out.base_dir = new_dir
    return out


# One entry per project-file section: a table (a @section dataclass) or an array of tables (list[...]).
# A new section is one line here plus its dataclass in workbench.plan.
SECTIONS: dict[str, Any] = {
    "model": ModelConfig,
    "freeze": FreezeConfig,
    "groups": list[GroupConfig],
    "unfreeze": list[UnfreezeStep],
    "data": DataConfig,
    "train": TrainConfig,
    "adapters": AdapterConfig,
    "head": HeadSpec,
    "compare": list[CompareTable],
}
OPTIONAL_SECTIONS = ("adapters", "head")  # absent means none (not a table of defaults)


def project_schema() -> dict[str, Any]:
    """The JSON Schema of a project file (what `workbench schema` prints), generated from the plan's types."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(_document_model()).json_schema()
    schema["title"] = "Model Surgery Workbench project file"
    return _drop_null(schema)


def _drop_null(node: Any) -> Any:
    """TOML has no null: an optional key is simply left out, so the schema should not offer null."""
    if isinstance(node, list):
        return [_drop_null(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _drop_null(v) for k, v in node.items() if not (k == "default" and v is None)}
    options = [o for o in out.get("anyOf", []) if o != {"type": "null"}]
    if "anyOf" in out:
        if len(options) == 1:
            del out["anyOf"]
            out.update(options[0])
        else:
            out["anyOf"] = options
    return out


def _document_model() -> type:
    from pydantic import ConfigDict, create_model

    fields_: dict[str, Any] = {}
    for name, kind in SECTIONS.items():
        fields_[name] = (kind | None, None)
    return create_model("Project", __config__=ConfigDict(strict=True, extra="forbid"), **fields_)


def plan_from_dict(data: dict[str, Any], where: str = "project") -> FinetunePlan:
    known = list(SECTIONS)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ProjectError(f"{where}: unknown section(s) {', '.join(unknown)}{did_you_mean(unknown[0], known)} "
                           f"(known: {', '.join(sorted(known))})")
    built: dict[str, Any] = {}
    for name, kind in SECTIONS.items():
        many = getattr(kind, "__origin__", None) is list
        cls = kind.__args__[0] if many else kind
        if name in OPTIONAL_SECTIONS and name not in data:
            built[name] = None
            continue
        raw = data.get(name, [] if many else {})
        if many:
            if not isinstance(raw, list):
                raise ProjectError(f"{where} [[{name}]] must be an array of tables ([[{name}]]), not {type(raw).__name__}")
            built[name] = [section_from_table(cls, item, f"{where} [[{name}]] #{i + 1}", ProjectError)
                           for i, item in enumerate(raw)]
        else:
            built[name] = section_from_table(cls, raw, f"{where} [{name}]", ProjectError)
    _check_compare_names(built["compare"], where)
    return FinetunePlan(**built)


def _check_compare_names(tables: list[CompareTable], where: str) -> None:
    """A [[compare]] table is chosen by its name (``--strategies NAME``): two with one name are a mistake."""
    first: dict[str, int] = {}
    for i, table in enumerate(tables):
        if table.name in first:
            raise ProjectError(f"{where} [[compare]] #{i + 1}: name {table.name!r} is also the name of "
                               f"[[compare]] #{first[table.name] + 1}; each table needs its own name")
        first[table.name] = i


def plan_to_dict(plan: FinetunePlan) -> dict[str, Any]:
    out: dict[str, Any] = {"model": _dump(plan.model), "freeze": _dump(plan.freeze)}
    if plan.groups:
        out["groups"] = [_dump(g) for g in plan.groups]
    if plan.unfreeze:
        out["unfreeze"] = [_dump(s) for s in plan.unfreeze]
    out["data"] = _dump(plan.data)
    out["train"] = _dump(plan.train)
    if plan.adapters is not None:
        out["adapters"] = _dump(plan.adapters)
    if plan.head is not None:
        out["head"] = _dump(plan.head)
    if plan.compare:
        out["compare"] = [_dump(t) for t in plan.compare]
    return out


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
