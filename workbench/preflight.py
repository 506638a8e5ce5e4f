"""Problems a plan has before training starts: the same list for the window and the CLI.

``preflight`` is pure Python over the tree, the plan and its Resolution (no torch): it adds
to the resolver's named warnings (one type for both: ``workbench.problems.Problem``) the checks
that need the training settings or the data — a head that does not match the data's classes, learning rates no run survives, BatchNorm
layers that train on one image per batch. Errors stop a run (the window asks first, the
CLI refuses without ``--force``); warnings are shown and training goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.layer_tree import LayerTree
from workbench.plan import FinetunePlan
from workbench.problems import ERROR, WARNING, Problem
from workbench.resolve import Resolution

LR_TOO_HIGH = 1.0
LR_TOO_LOW = 1e-8


class PreflightError(WorkbenchError):
    """The plan has errors that would make the run fail or do nothing useful."""


@dataclass(frozen=True)
class DataFacts:
    """What a scan of the training data found, as far as the plan's checks need it."""

    classes: int
    train_images: int


def preflight(tree: LayerTree, plan: FinetunePlan, resolution: Resolution, num_classes: int | None = None,
              data: DataFacts | None = None) -> list[Problem]:
    """Every problem with this plan, errors first. ``num_classes`` is the model head's outputs."""
    problems = list(resolution.warnings)
    if data is not None and num_classes is not None and data.classes != num_classes:
        problems.append(Problem(
            "class-count-mismatch",
            f"the data has {data.classes} classes but the model's head has {num_classes} outputs: the head must be "
            f"rebuilt for {data.classes} classes (Start offers it; on the command line, --adapt-head)", ERROR, "data"))
    problems += _learning_rates(plan, resolution)
    problems += _batchnorm_batch_of_one(tree, plan, resolution, data)
    problems += _warmup(plan)
    return sorted(problems, key=lambda p: p.severity != ERROR)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def check(problems: list[Problem]) -> None:
    """Raise PreflightError naming every error (warnings pass)."""
    found = errors(problems)
    if found:
        listed = "; ".join(str(p) for p in found)
        raise PreflightError(f"the plan has {len(found)} error(s) that would spoil the run: {listed} "
                             "(fix them, or pass --force to train anyway)")


def _learning_rates(plan: FinetunePlan, resolution: Resolution) -> list[Problem]:
    scheduled = {name for step in plan.unfreeze for name in step.groups}
    out = []
    for group in resolution.groups:
        if not (group.params or group.name in scheduled) or not math.isfinite(group.lr) or group.lr == 0:
            continue  # frozen groups never use their LR; LR 0 is the resolver's trainable-group-lr-zero
        if group.lr > LR_TOO_HIGH:
            out.append(Problem("lr-too-high", f"group {group.name!r} trains at lr = {group.lr:g} (above {LR_TOO_HIGH:g}): "
                               "its weights would be destroyed in the first steps (fine-tuning LRs are about 1e-5 to "
                               "1e-2)", ERROR, "groups", group.name))
        elif group.lr < LR_TOO_LOW:
            out.append(Problem("lr-too-low", f"group {group.name!r} trains at lr = {group.lr:g} (below {LR_TOO_LOW:g}): "
                               "its weights would barely move; freeze it instead, or raise the LR", WARNING, "groups",
                               group.name))
    return out


def _batchnorm_batch_of_one(tree: LayerTree, plan: FinetunePlan, resolution: Resolution,
                            data: DataFacts | None) -> list[Problem]:
    one_image = plan.train.batch_size == 1 or (data is not None and data.train_images == 1)
    if not one_image:
        return []
    eval_mode = set(resolution.bn_eval)
    training = [n for n in tree.nodes if n.is_batchnorm and n.index not in eval_mode]
    if not training:
        return []
    why = "batch size 1" if plan.train.batch_size == 1 else "a single training image"
    single = [n.path for n in training if n.output_shape is None or math.prod(n.output_shape[2:]) == 1]
    if single:
        return [Problem("batchnorm-batch-of-one",
                        f"{len(single)} BatchNorm layer(s) that train ({_few(single)}) see one value per channel with "
                        f"{why}: training stops with \"Expected more than 1 value per channel\". Use a batch size of 2 "
                        "or more, or keep BatchNorm in inference mode (batchnorm = \"eval\")", ERROR, "train")]
    return [Problem("batchnorm-batch-of-one",
                    f"{len(training)} BatchNorm layer(s) train with {why}: their statistics come from one image per "
                    "step and drift from the data's. Use a batch size of 2 or more, or keep BatchNorm in inference "
                    "mode (batchnorm = \"eval\")", WARNING, "train")]


def _warmup(plan: FinetunePlan) -> list[Problem]:
    train = plan.train
    if not train.warmup_epochs:
        return []
    if train.scheduler == "onecycle":
        return [Problem("warmup-ignored", f"warmup_epochs = {train.warmup_epochs:g} has no effect with the onecycle "
                        "schedule (it ramps up by itself)", WARNING, "train")]
    if train.warmup_epochs >= train.epochs:
        return [Problem("warmup-longer-than-training", f"warmup_epochs = {train.warmup_epochs:g} is not shorter than "
                        f"the run ({train.epochs} epoch(s)): the LR never reaches its set value", WARNING, "train")]
    return []


def _few(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … {len(names) - limit} more" if len(names) > limit else "")
