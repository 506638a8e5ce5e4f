"""The machinery of a validated project-file section: the ``@section`` decorator, rebuilding, and the words of an error.

A section (``workbench.plan``) is a pydantic dataclass, strict, closed to unknown keys, validated on
construction and on assignment; a bad value raises PlanError with one line that names the section,
the key, what is expected and what was given.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import field, fields
from typing import Any, TypeVar, cast, dataclass_transform

import pydantic
from pydantic import ConfigDict, Field

from workbench.errors import PlanError, WorkbenchError

# Strict: "10" is not an integer, 1 is not true.
# validate_assignment: ``plan.train.lr = float("nan")`` after construction is refused like the file is.
_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_assignment=True)

# The section's name in the file, by class name (an array of tables in brackets: "[groups]" shows as [[groups]]).
SECTION_NAMES = {"ModelConfig": "model", "FreezeConfig": "freeze", "GroupConfig": "[groups]",
                 "UnfreezeStep": "[unfreeze]", "DataConfig": "data", "TrainConfig": "train",
                 "AdapterConfig": "adapters", "HeadSpec": "head", "CompareTable": "[compare]"}
KEY_HINTS: dict[str, str] = {}  # what a key must be, in words, where pydantic's are unclear (filled by workbench.plan)


_Section = TypeVar("_Section")


@dataclass_transform(field_specifiers=(field, Field))
def section(cls: type[_Section]) -> type[_Section]:
    """A validated project-file section: a pydantic dataclass whose bad values raise PlanError.

    Constructing one from Python (``TrainConfig(batch_size=0)``) or assigning to it afterwards
    (``plan.train.batch_size = 0``) is refused like the TOML file is.
    """
    validated = pydantic.dataclasses.dataclass(cls, config=_CONFIG)
    init, assign = validated.__init__, validated.__setattr__
    where = f"[{SECTION_NAMES.get(cls.__name__, cls.__name__)}]"

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except pydantic.ValidationError as exc:
            raise PlanError(describe_error(exc, where)) from None

    def __setattr__(self: Any, name: str, value: Any) -> None:
        try:
            assign(self, name, value)
        except pydantic.ValidationError as exc:
            raise PlanError(describe_error(exc, where)) from None

    validated.validating_init = init  # type: ignore[attr-defined]  # the raw one, for workbench.project
    validated.__init__ = __init__  # type: ignore[method-assign]
    validated.__setattr__ = __setattr__  # type: ignore[method-assign]
    SECTION_CLASSES.append(validated)
    return cast("type[_Section]", validated)


SECTION_CLASSES: list[type] = []  # every @section class, in definition order (a [[compare]] table's after its sources)


def rebuild_sections() -> None:
    """Re-read every section's annotations, e.g. after a limit such as ``MAX_EPOCHS`` was changed at run time
    (a test, an application embedding the core): validation, ``workbench schema``, the command-line
    flags and the window's boxes all read the rebuilt schema."""
    for cls in SECTION_CLASSES:
        checked_init = cls.__dict__["__init__"]
        pydantic.dataclasses.rebuild_dataclass(cls, force=True)
        cls.__init__ = checked_init  # type: ignore[misc]  # the rebuild installs pydantic's own __init__ again


def describe_error(exc: pydantic.ValidationError, where: str) -> str:
    """One line for the first problem pydantic found: where, which key, what is expected, what was given."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    key = loc[0] if loc else ""
    kind, ctx = err["type"], err.get("ctx") or {}
    given = err.get("input")
    if kind == "value_error":
        return f"{where} {str(ctx.get('error', err['msg']))}"
    if key in KEY_HINTS and kind != "extra_forbidden":
        shown = _show(given) if not any(isinstance(p, int) for p in err["loc"]) else f"an item {_show(given)}"
        return f"{where} {key} must be {KEY_HINTS[key]}, not {shown}"
    expected = {
        "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number",
        "string_type": "a string", "bool_type": "true or false", "list_type": "a list",
        "tuple_type": "a list", "finite_number": "a finite number", "dataclass_type": "a table",
        "dict_type": "a table", "missing": None, "string_too_short": "a non-empty string",
    }.get(kind, "")
    if kind == "missing":
        return f"{where} {key} is required"
    if kind == "extra_forbidden":
        return f"{where}: unknown key {key!r}"
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{where} {key} must be one of {choices}, not {_show(given)}"
    for name, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if kind.endswith(("greater_than_equal", "greater_than", "less_than_equal", "less_than")) and name in ctx:
            return f"{where} {key} must be {op} {ctx[name]}, not {_show(given)}"
    if kind == "int_parsing_size":
        return f"{where} {key} is too large: {_show(given)}"
    if expected:
        return f"{where} {key} must be {expected}, not {_show(given)}"
    return f"{where} {key}: {err['msg'][0].lower()}{err['msg'][1:]}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def section_from_table(cls: Any, values: Any, where: str, error: type[WorkbenchError] = PlanError) -> Any:
    """Validate one TOML table through its section's schema; the first problem becomes one ``error`` line."""
    if not isinstance(values, dict):
        raise error(f"{where} must be a table, not {values!r}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}{did_you_mean(unknown[0], names)} "
                    f"(known: {', '.join(names)})")
    try:
        obj = cls.__new__(cls)
        cls.validating_init(obj, **values)  # raises pydantic's error, which we word with the file and section
        return obj
    except pydantic.ValidationError as exc:
        raise error(describe_error(exc, where)) from None


def did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
