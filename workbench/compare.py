"""Compare fine-tuning strategies on one project: accuracy against cost, each run through the normal training path.

A strategy is a transformation of the project's plan (``workbench.compare_plans``); each one is
trained by the same steps as ``workbench train`` (seed, model, data, Trainer) into its
own run folder, so a result opens as a run and trains identically from its
``project.toml``. Strategies that freeze the same trunk share its on-disk feature cache
(the cache key is the trunk's graph, weights and the data). ``workbench.compare_report``
writes the results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.compare_plans import (  # noqa: F401  (the comparison's vocabulary, used with it)
    SPECIAL,
    CompareError,
    Strategy,
    expand,
    parse_strategies,
    safe_name,
    stage_count,
    strategy_help,
    strategy_plan,
)
from workbench.compare_report import StrategyResult, pareto_front, write_outputs  # noqa: F401
from workbench.errors import WorkbenchError
from workbench.plan import FinetunePlan


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


def _without_adapters(plan: FinetunePlan) -> FinetunePlan:
    out = plan.copy()
    out.adapters = None
    return out


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
        from workbench.training.devices import check_compile, pick_device
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
                device = pick_device(plan.train.device)
                if plan.train.compile:
                    check_compile(device)
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


def default_out_dir(project: Path) -> Path:
    return Path(project).resolve().parent / "runs" / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
