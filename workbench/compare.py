"""Compare fine-tuning strategies on one project: accuracy against cost, each run through the normal training path.

A strategy is a transformation of the project's plan (``strategy_plan``); each one is
trained by the same steps as ``workbench train`` (seed, model, data, Trainer) into its
own run folder, so a result opens as a run and trains identically from its
``project.toml``. Strategies that freeze the same trunk share its on-disk feature cache
(the cache key is the trunk's graph, weights and the data).

Strategies are registered objects (``workbench.strategies``: built-ins and ``workbench.strategies``
plugins); besides them ``sweep`` (``freeze:n`` for every n) and ``plan`` (the project as it is), and
``[[compare]]`` tables in the project file: ``name``, optional ``strategy`` (a strategy to start from,
default ``plan``) and overrides ``frozen``, ``unfrozen``, ``batchnorm``, ``lr``, ``epochs``, ``optimizer``.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.atomic import atomic_path, atomic_write_text
from workbench.errors import WorkbenchError
from workbench.plan import FinetunePlan

SPECIAL = {"sweep": "freeze:N for every N from 0 to the model's stage count",
           "plan": "the project's own plan, as it is"}
OVERRIDES = {"name", "strategy", "frozen", "unfrozen", "batchnorm", "lr", "epochs", "optimizer"}


class CompareError(WorkbenchError):
    """A strategy list, a [[compare]] table or the output folder is not usable."""


@dataclass
class Strategy:
    name: str
    kind: str  # a built-in name, or "table" for a [[compare]] table
    arg: float | int | None = None
    table: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, Any]:
        """What the strategy trains: ``freeze:1`` and ``freeze:01`` have one key (a table: its name)."""
        return ("table", self.name) if self.kind == "table" else (self.kind, self.arg)


@dataclass
class StrategyResult:
    name: str
    trainable_params: int
    total_params: int
    val_top1: float | None
    val_top1_best: float | None
    best_epoch: int | None
    train_top1: float | None
    wall_s: float
    images_per_s: float
    optimizer_state_bytes: int
    grad_bytes: int
    peak_mem_bytes: int
    cached: bool
    run_dir: str
    val_top5: float | None = None
    val_top5_best: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)  # per epoch: train/val loss and accuracy
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The documented JSON shape of one strategy."""
        keys = ("name", "trainable_params", "total_params", "val_top1", "val_top1_best", "best_epoch", "train_top1",
                "wall_s", "images_per_s", "optimizer_state_bytes", "grad_bytes", "peak_mem_bytes", "cached", "run_dir")
        out = {k: getattr(self, k) for k in keys}
        if self.val_top5 is not None:
            out["val_top5"], out["val_top5_best"] = self.val_top5, self.val_top5_best
        return out


@dataclass
class CompareEvent:
    """What ``Comparison.run`` yields: a strategy's training report, or its start / end."""

    strategy: str
    index: int
    count: int
    kind: str  # "start", "report", "done", "failed"
    report: Any = None
    result: StrategyResult | None = None
    error: str | None = None


def parse_strategies(text: str, tables: list[dict[str, Any]] | None = None) -> list[Strategy]:
    """``probe,freeze:2,...`` plus the project's ``[[compare]]`` tables (also selectable by name)."""
    by_name = {}
    for i, table in enumerate(tables or []):
        where = f"[[compare]] #{i + 1}"
        if not isinstance(table, dict) or not isinstance(table.get("name"), str) or not table["name"]:
            raise CompareError(f"{where} needs a name")
        unknown = sorted(set(table) - OVERRIDES)
        if unknown:
            raise CompareError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(OVERRIDES))})")
        if table["name"] in by_name:
            first = next(j for j, t in enumerate(tables or []) if t.get("name") == table["name"]) + 1
            raise CompareError(f"{where}: name {table['name']!r} is also the name of [[compare]] #{first}; "
                               "each table needs its own name")
        by_name[table["name"]] = table
    out: list[Strategy] = []
    items = [t.strip() for t in text.split(",") if t.strip()] if text else list(by_name)
    if not items:
        raise CompareError("no strategies given (e.g. --strategies probe,freeze:2,full-lowlr,discriminative,gradual)")
    for item in items:
        if item in by_name:
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
    if strategy.kind == "plan":
        return plan
    if strategy.kind == "table":
        table = strategy.table
        inner = strategy.table.get("strategy", "plan")
        if inner == strategy.name or not isinstance(inner, str):
            raise CompareError(f"[[compare]] {strategy.name!r}: strategy must name a built-in")
        plan = strategy_plan(base, tree, _builtin(inner))
        return _override(plan, table)
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


def _override(plan: FinetunePlan, table: dict[str, Any]) -> FinetunePlan:
    """A table's overrides, each assigned through the schema (its types and limits, e.g. epochs <= 100,000)."""
    name = table["name"]
    for key, section in _OVERRIDE_SECTIONS.items():
        if key not in table:
            continue
        try:
            setattr(getattr(plan, section), key, table[key])
        except WorkbenchError as exc:
            raise CompareError(f"[[compare]] {name!r}: {exc}") from None
        if key in ("frozen", "unfrozen"):
            plan.unfreeze = []
    return plan


_OVERRIDE_SECTIONS = {"frozen": "freeze", "unfrozen": "freeze", "batchnorm": "freeze", "lr": "train",
                      "epochs": "train", "optimizer": "train"}


def _without_adapters(plan: FinetunePlan) -> FinetunePlan:
    out = plan.copy()
    out.adapters = None
    return out


def compare_tables(project: Path) -> list[dict[str, Any]]:
    """The ``[[compare]]`` tables of a project file (the plan loader ignores them)."""
    try:
        data = tomllib.loads(Path(project).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CompareError(f"{project}: {exc}") from None
    tables = data.get("compare", [])
    if not isinstance(tables, list):
        raise CompareError(f"{project}: compare must be an array of tables ([[compare]])")
    return tables


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "strategy"


def _rss_bytes() -> int:
    try:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Comparison:
    """Runs strategies one after another; ``run()`` yields CompareEvents; ``request_stop()`` ends it after a batch.

    A strategy that fails is reported (``failed``) and the next one starts.
    """

    def __init__(self, base: FinetunePlan, strategies: list[Strategy], out_dir: Path,
                 project: str = "", epochs: int | None = None, start_weights: Any = None) -> None:
        """``start_weights``: a state dict every strategy starts from instead of the plan's initial weights
        (the GUI passes an opened run's; tensors are matched by name and shape)."""
        self.base = base.copy()
        self.start_weights = start_weights
        if start_weights is not None:  # every weight is replaced: build without fetching pretrained ones
            self.base.model.pretrained = False
        if epochs is not None:
            try:
                self.base.train.epochs = epochs  # through the schema: the same limits as train --epochs
            except WorkbenchError as exc:
                raise CompareError(f"--epochs: {exc}") from None
        self.strategies = strategies
        self.out_dir = Path(out_dir)
        self.project = project
        self.results: list[StrategyResult] = []
        self.failed: list[dict[str, str]] = []
        self.data_info: dict[str, Any] = {}
        self._trainer: Any = None
        self._shared: tuple[Any, Any] | None = None  # (Workspace, DataBundle) every strategy starts from
        self._stop = False

    def request_stop(self) -> None:
        self._stop = True
        if self._trainer is not None:
            self._trainer.request_stop()

    @property
    def stopped(self) -> bool:
        return self._stop

    def prepare(self) -> list[Strategy]:
        """Before anything trains: check the output folder, load the model and the data once, expand ``sweep``,
        and check every strategy's plan as ``workbench train`` would (paths, LRs, device). Raises CompareError."""
        from workbench.atomic import check_folder_target
        from workbench.preflight import errors
        from workbench.training.devices import pick_device
        from workbench.training.prepare import plan_problems
        from workbench.workspace import Workspace

        check_folder_target(self.out_dir, "--out")
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise CompareError(f"{self.out_dir} already exists and is not empty: choose a new --out folder "
                               "(a comparison never overwrites earlier runs)")
        shared, images = self._shared_start()
        self.strategies = expand(self.strategies, stage_count(shared.tree))
        for s in self.strategies:  # every plan is checked before anything trains
            plan = self._strategy_plan(shared, s)
            try:
                pick_device(plan.train.device)
                if plan.adapters is not None:
                    from workbench.adapters import adapter_targets

                    adapter_targets(shared.backbone.module, shared.tree, plan.adapters)
                found = errors(plan_problems(Workspace(shared.backbone, shared.tree, _without_adapters(plan)), images))
            except WorkbenchError as exc:
                raise CompareError(f"strategy {s.name!r}: {exc}") from None
            if found:
                raise CompareError(f"strategy {s.name!r} would spoil its run: " + "; ".join(str(p) for p in found))
        return self.strategies

    def _strategy_plan(self, shared: Any, strategy: Strategy) -> FinetunePlan:
        base = shared.plan.copy()
        base.adapters = self.base.adapters  # the project's [adapters]: what lora starts from
        return strategy_plan(base, shared.tree, strategy)

    def _shared_start(self) -> tuple[Any, Any]:
        """The model and data every strategy starts from (each run trains a copy), and the listed images."""
        import torch

        from workbench.data import check_num_classes, open_data, open_images
        from workbench.workspace import Workspace

        plan = _without_adapters(self.base)  # strategies with adapters put them on a copy of this model
        images = open_images(plan.data, plan.base_dir)
        plan.model.num_classes = check_num_classes(images.classes, plan.model.num_classes, False)
        torch.manual_seed(plan.train.seed)  # the same model init as `workbench train` gives this plan
        shared = Workspace.from_plan(plan)
        if self.start_weights is not None:
            shared.take_weights(self.start_weights)
        data = open_data(plan.data, plan.base_dir, shared.backbone.spec, augment=plan.train.augment, images=images)
        self._shared = (shared, data)
        self.data_info = {"classes": len(data.classes), "train_images": len(data.train),
                          "val_images": len(data.val) if data.val is not None else 0,
                          "dataset": plan.data.dataset, "path": plan.data.path}
        return shared, images

    def run(self) -> Iterator[CompareEvent]:
        strategies = self.prepare()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        count = len(strategies)
        for index, strategy in enumerate(strategies):
            if self._stop:
                break
            yield CompareEvent(strategy.name, index, count, "start")
            try:
                result = None
                for item in self._train(strategy):
                    if isinstance(item, StrategyResult):
                        result = item
                    else:
                        yield CompareEvent(strategy.name, index, count, "report", report=item)
            except Exception as exc:  # one strategy's crash never ends the comparison
                message = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
                self.failed.append({"name": strategy.name, "error": message})
                yield CompareEvent(strategy.name, index, count, "failed", error=message)
                continue
            finally:
                self._trainer = None
            assert result is not None
            self.results.append(result)
            yield CompareEvent(strategy.name, index, count, "done", result=result)

    def _train(self, strategy: Strategy) -> Iterator[Any]:
        """The steps of ``workbench train`` for one strategy; yields reports, then the StrategyResult."""
        import torch

        from workbench.cost import plan_cost, workspace_cost_model
        from workbench.freezing import plan_at_epoch
        from workbench.resolve import resolve_plan
        from workbench.training.reports import EpochReport, StateReport
        from workbench.training.trainer import Trainer
        from workbench.workspace import Workspace

        if self._shared is None:
            self._shared_start()
        assert self._shared is not None
        shared, data = self._shared
        start = time.perf_counter()  # (loading the model and opening the data, once for all, is not counted)
        plan = self._strategy_plan(shared, strategy)
        ws = Workspace(shared.backbone, shared.tree, plan)
        if plan.adapters is not None:
            import copy

            from workbench.workspace import adapt_workspace

            ws = Workspace(copy.deepcopy(shared.backbone), shared.tree, plan)
            torch.manual_seed(plan.train.seed)  # the adapters' initial values, as `workbench train` draws them
            for note in adapt_workspace(ws):
                yield StateReport("notice", note, 0)
        res = ws.resolve()
        last_plan = plan_at_epoch(plan, ws.tree, plan.train.epochs - 1) if plan.unfreeze else plan
        last_res = resolve_plan(ws.tree, last_plan, ws.default_groups()) if plan.unfreeze else res
        cost = plan_cost(workspace_cost_model(ws), last_res, plan.train)
        run_dir = self.out_dir / safe_name(strategy.name)
        trainer = Trainer(ws, data, run_dir)
        self._trainer = trainer
        if self._stop:
            trainer.request_stop()
        cuda = torch.cuda.is_available() and not str(plan.train.device).startswith(("cpu", "mps"))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        peak, cached, curve = _rss_bytes(), False, []
        for report in trainer.run():
            if isinstance(report, StateReport):
                cached = cached or (report.kind == "cache" and report.message.startswith("caching the frozen trunk"))
            elif isinstance(report, EpochReport):
                curve.append({"epoch": report.epoch, "train_loss": report.train_loss,
                              "train_top1": report.train_accuracy, "val_loss": report.val_loss,
                              "val_top1": report.val_accuracy, "val_top5": report.val_top5,
                              "seconds": report.seconds})
                peak = max(peak, _rss_bytes())
            yield report
        wall = time.perf_counter() - start
        if cuda:
            peak = torch.cuda.max_memory_allocated()
        vals = [c["val_top1"] for c in curve if c["val_top1"] is not None]
        best = max(range(len(vals)), key=lambda i: vals[i]) if vals else None
        top5 = [c["val_top5"] for c in curve if c["val_top5"] is not None]
        seen = len(data.train) * len(curve)
        yield StrategyResult(
            name=strategy.name, trainable_params=res.trainable_params if not plan.unfreeze else last_res.trainable_params,
            total_params=res.total_params, val_top1=vals[-1] if vals else None,
            val_top1_best=vals[best] if best is not None else None, best_epoch=best,
            train_top1=curve[-1]["train_top1"] if curve else None, wall_s=round(wall, 3),
            images_per_s=round(seen / wall, 2) if wall > 0 else 0.0,
            optimizer_state_bytes=cost.optimizer_state_bytes, grad_bytes=cost.grad_bytes, peak_mem_bytes=peak,
            cached=cached, run_dir=str(trainer.run_dir), val_top5=top5[-1] if top5 else None,
            val_top5_best=max(top5) if top5 else None, curve=curve)

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "data": self.data_info,
                "strategies": [r.row() for r in self.results],
                "curves": {r.name: r.curve for r in self.results},
                "failed": self.failed, "stopped": self._stop}


def pareto_front(results: list[StrategyResult]) -> set[str]:
    """Strategies no other beats on both accuracy (higher) and wall time (lower)."""
    scored = [r for r in results if r.val_top1_best is not None]
    front = set()
    for r in scored:
        if not any((o.val_top1_best >= r.val_top1_best and o.wall_s <= r.wall_s)  # type: ignore[operator]
                   and (o.val_top1_best > r.val_top1_best or o.wall_s < r.wall_s) for o in scored):  # type: ignore[operator]
            front.add(r.name)
    return front


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def table_rows(results: list[StrategyResult]) -> list[list[str]]:
    from workbench.cost import human_bytes

    front = pareto_front(results)
    rows = [["strategy", "val top-1", "best (epoch)", "train top-1", "wall s", "img/s", "trainable",
             "grads+opt state", "peak mem", "cached", "pareto"]]
    for r in results:
        rows.append([r.name, _pct(r.val_top1), f"{_pct(r.val_top1_best)} ({r.best_epoch + 1 if r.best_epoch is not None else '-'})",
                     _pct(r.train_top1), f"{r.wall_s:.1f}", f"{r.images_per_s:.0f}",
                     f"{r.trainable_params:,} / {r.total_params:,}", human_bytes(r.grad_bytes + r.optimizer_state_bytes),
                     human_bytes(r.peak_mem_bytes), "yes" if r.cached else "no", "★" if r.name in front else ""])
    return rows


def text_table(results: list[StrategyResult]) -> str:
    rows = table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def markdown_table(results: list[StrategyResult]) -> str:
    rows = table_rows(results)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def write_chart(results: list[StrategyResult], path: Path) -> None:
    """Accuracy (best val top-1) against wall time, the Pareto front joined and marked. Atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in results if r.val_top1_best is not None]
    best = {r.name: float(r.val_top1_best or 0.0) for r in scored}
    front = sorted((r for r in scored if r.name in pareto_front(scored)), key=lambda r: r.wall_s)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in scored:
        on = r.name in {f.name for f in front}
        ax.scatter(r.wall_s, 100 * best[r.name], s=60 if on else 35, color="C3" if on else "C0",
                   marker="*" if on else "o", zorder=3)
        ax.annotate(r.name, (r.wall_s, 100 * best[r.name]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if front:
        ax.step([r.wall_s for r in front], [100 * best[r.name] for r in front], where="post",
                color="C3", alpha=0.6, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("best val top-1 (%)")
    ax.set_title("Strategies: accuracy vs wall time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_outputs(comparison: Comparison, json_path: Path | None) -> list[Path]:
    """compare.json in the output folder (and at ``json_path``), with a Markdown table and PNG beside each JSON."""
    data = json.dumps(comparison.to_dict(), indent=2)
    written = []
    targets = [comparison.out_dir / "compare.json"] + ([Path(json_path)] if json_path else [])
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, data)
        atomic_write_text(target.with_suffix(".md"), markdown_table(comparison.results))
        written += [target, target.with_suffix(".md")]
        if comparison.results:
            write_chart(comparison.results, target.with_suffix(".png"))
            written.append(target.with_suffix(".png"))
    return written


def default_out_dir(project: Path) -> Path:
    return Path(project).resolve().parent / "runs" / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
