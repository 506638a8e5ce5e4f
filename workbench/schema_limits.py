"""A plan key's limits read from the schema (``workbench.plan``), for editors that must not copy them.

``field_limits(TrainConfig, "epochs")`` gives the bounds pydantic enforces (``ge``/``gt``/``le``/``lt``)
or the choices of a ``Literal``; ``Limits.problem(value)`` says why a value is refused, in the words
of the project-file error, or None. The window's number boxes take their ranges from here, so a limit
changed in the schema changes every editor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    key: str
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # exclusive: the value must be > minimum
    below_maximum: bool = False  # exclusive: the value must be < maximum
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def problem(self, value: float) -> str | None:
        """Why ``value`` cannot be stored in this key, or None when it can."""
        if self.choices is not None:
            return None if value in self.choices else f"{self.key} must be one of {', '.join(map(str, self.choices))}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.key} must be a finite number, not {value}"
        if self.integer and value != int(value):
            return f"{self.key} must be a whole number, not {value:g}"
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.above_minimum else value < low):
            return f"{self.key} must be {'>' if self.above_minimum else '>='} {_show(low)}, not {_show(value)}"
        if high is not None and (value >= high if self.below_maximum else value > high):
            return f"{self.key} must be {'<' if self.below_maximum else '<='} {_show(high)}, not {_show(value)}"
        return None

    def describe(self) -> str:
        """The range in words, e.g. "1 to 100,000" or "0 or more, below 1"."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not self.above_minimum and not self.below_maximum:
            return f"{_show(low)} to {_show(high)}"
        parts = []
        if low is not None:
            parts.append(f"above {_show(low)}" if self.above_minimum else f"{_show(low)} or more")
        if high is not None:
            parts.append(f"below {_show(high)}" if self.below_maximum else f"at most {_show(high)}")
        return ", ".join(parts) or "any number"


def field_limits(section: type, key: str) -> Limits:
    """The limits of ``section``'s ``key`` (a ``workbench.plan`` section class) as its schema states them."""
    schema = _properties(section).get(key)
    if schema is None:
        raise KeyError(f"{section.__name__} has no key {key!r}")
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    node = options[0] if len(options) == 1 else schema
    if "enum" in node or "const" in node:
        return Limits(key, choices=tuple(node.get("enum", [node.get("const")])))
    low, above = node.get("minimum"), False
    if "exclusiveMinimum" in node:
        low, above = node["exclusiveMinimum"], True
    high, below = node.get("maximum"), False
    if "exclusiveMaximum" in node:
        high, below = node["exclusiveMaximum"], True
    return Limits(key, low, high, above, below, integer=node.get("type") == "integer")


_SCHEMAS: dict[type, tuple[Any, dict[str, Any]]] = {}  # section -> (its validator, its properties)


def _properties(section: type) -> dict[str, Any]:
    """The section's JSON Schema properties, computed again when the section was rebuilt (``rebuild_sections``)."""
    from pydantic import TypeAdapter

    validator = getattr(section, "__pydantic_validator__", None)
    cached = _SCHEMAS.get(section)
    if cached is None or cached[0] is not validator:
        cached = (validator, dict(TypeAdapter(section).json_schema().get("properties", {})))
        _SCHEMAS[section] = cached
    return cached[1]


def _show(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:g}"
