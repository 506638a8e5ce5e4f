"""Which strategies a comparison trains, and each one's plan: the strategy list, ``[[compare]]`` tables, ``sweep``.

Strategies are registered objects (``workbench.strategies``: built-ins and ``workbench.strategies``
plugins); besides them ``sweep`` (``freeze:n`` for every n) and ``plan`` (the project as it is), and
the project's ``[[compare]]`` tables (``workbench.plan.CompareTable``): a name, a strategy to start
from (default ``plan``) and overrides checked by the schema of their sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError
from workbench.plan import COMPARE_OVERRIDES, CompareTable, FinetunePlan

SPECIAL = {"sweep": "freeze:N for every N from 0 to the model's stage count",
           "plan": "the project's own plan, as it is"}


class CompareError(WorkbenchError):
    """A strategy list, a [[compare]] table or the output folder is not usable."""


@dataclass
class Strategy:
    name: str
    kind: str  # a registered strategy's name, "sweep", "plan", or "table" for a [[compare]] table
    arg: float | int | None = None
    table: CompareTable | None = None

    @property
    def key(self) -> tuple[str, Any]:
        """What the strategy trains: ``freeze:1`` and ``freeze:01`` have one key (a table: its name)."""
        return ("table", self.name) if self.kind == "table" else (self.kind, self.arg)


def parse_strategies(text: str, tables: list[CompareTable] | None = None) -> list[Strategy]:
    """``probe,freeze:2,...`` plus the project's ``[[compare]]`` tables (``plan.compare``, also selectable by
    name; the project loader has checked them against the schema)."""
    by_name = {table.name: table for table in tables or []}
    out: list[Strategy] = []
    items = [t.strip() for t in text.split(",") if t.strip()] if text else list(by_name)
    if not items:
        raise CompareError("no strategies given (e.g. --strategies probe,freeze:2,full-lowlr,discriminative,gradual)")
    for item in items:
        if item in by_name:
            _table_start(by_name[item])  # a table starting from an unknown strategy fails before anything loads
            out.append(Strategy(item, "table", table=by_name[item]))
            continue
        out.append(_builtin(item))
    seen: dict[Any, str] = {}
    for s in out:
        if s.key in seen:
            same = f" ({seen[s.key]} and {s.name} are the same strategy)" if seen[s.key] != s.name else ""
            raise CompareError(f"strategy listed twice: {s.name}{same}")
        seen[s.key] = s.name
    return out


def _builtin(item: str) -> Strategy:
    from workbench.strategies import registered

    kind, _, arg = item.partition(":")
    if kind in SPECIAL:
        if arg:
            raise CompareError(f"{kind} takes no argument, not {item!r}")
        return Strategy(item, kind)
    strategies = registered()
    if kind not in strategies:
        names = [s.syntax for s in strategies.values()] + list(SPECIAL)
        raise CompareError(f"unknown strategy {item!r} (known: {', '.join(names)}, or a [[compare]] table's name)")
    try:
        value = strategies[kind].parse(arg)
    except ValueError as exc:
        raise CompareError(f"strategy {item!r}: {exc}") from None
    return Strategy(item, kind, value)


def strategy_help() -> str:
    """One line per strategy (registered ones, then sweep and plan): what --help and the docs show."""
    from workbench.strategies import help_lines

    return "\n".join(help_lines() + [f"{name}: {text}" for name, text in SPECIAL.items()])


def expand(strategies: list[Strategy], stage_count: int) -> list[Strategy]:
    """``sweep`` becomes ``freeze:0 … freeze:n`` (duplicates of listed ``freeze:N`` dropped)."""
    out: list[Strategy] = []
    for s in strategies:
        if s.kind == "sweep":
            out += [Strategy(f"freeze:{n}", "freeze", n) for n in range(stage_count + 1)]
        else:
            out.append(s)
    unique: dict[Any, Strategy] = {}
    for s in out:
        unique.setdefault(s.key, s)  # the first of each strategy, in order
    return list(unique.values())


def stage_count(tree: Any) -> int:
    return max(0, len([n for n, _ in tree.stages if n != "head"]) - 1)


def strategy_plan(base: FinetunePlan, tree: Any, strategy: Strategy) -> FinetunePlan:
    """The project's plan transformed by one strategy (model, data, seed, epochs kept)."""
    plan = base.copy()
    plan.compare = []  # a strategy's plan is one run; the project's [[compare]] tables are not part of it
    if strategy.kind == "plan":
        return plan
    if strategy.table is not None:
        return _override(strategy_plan(base, tree, _table_start(strategy.table)), strategy.table)
    from workbench.strategies import registered

    spec = registered().get(strategy.kind)
    if spec is None:
        raise CompareError(f"unknown strategy {strategy.name!r}")
    plan.unfreeze = []
    project_adapters = plan.adapters
    try:
        spec.apply(plan, tree, strategy.arg)
    except ValueError as exc:  # a strategy that does not fit this project (e.g. lp-ft:5 in a 3-epoch run)
        raise CompareError(f"{strategy.name}: {exc}") from None
    if plan.adapters is project_adapters:  # adapters belong to the strategies that set them (lora), not to all
        plan.adapters = None
    return plan


def _table_start(table: CompareTable) -> Strategy:
    """The strategy a [[compare]] table starts from (a registered one, or plan)."""
    if table.strategy == table.name:
        raise CompareError(f"[[compare]] {table.name!r}: strategy must name a built-in")
    try:
        return _builtin(table.strategy)
    except CompareError as exc:
        raise CompareError(f"[[compare]] {table.name!r}: {exc}") from None


def _override(plan: FinetunePlan, table: CompareTable) -> FinetunePlan:
    """A table's overrides, each assigned to its section (validated there, as the file was)."""
    for key, value in table.overrides().items():
        try:
            setattr(getattr(plan, COMPARE_OVERRIDES[key]), key, value)
        except WorkbenchError as exc:
            raise CompareError(f"[[compare]] {table.name!r}: {exc}") from None
        if key in ("frozen", "unfrozen"):
            plan.unfreeze = []
    return plan


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "strategy"
