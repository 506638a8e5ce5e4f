"""One path from a plan to a ready Trainer, shared by the CLI and the GUI."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.data import LabelledImages
    from workbench.plan import FinetunePlan
    from workbench.problems import Problem
    from workbench.tables import LabelledTable
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace


@dataclass
class PreparedRun:
    """A Trainer ready to run, plus what the user should be told before it starts."""

    trainer: "Trainer"
    data_problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


def build_trainer(ws: "Workspace", run_dir: Path | None, *, resume: bool = False, overwrite: bool = False,
                  allow_data_change: bool = False, images: "LabelledImages | LabelledTable | None" = None,
                  copy_model: bool = True) -> "Trainer":
    """Open the plan's data for ``ws``'s model and build the Trainer (the run folder is checked here).

    ``images``: the plan's images, when the caller opened them already (a folder is listed only once).
    ``copy_model``: see ``Trainer``.
    """
    from workbench.data import open_data
    from workbench.training.trainer import Trainer

    data = open_data(ws.plan.data, ws.plan.base_dir, ws.backbone.spec, augment=ws.plan.train.augment, images=images)
    return Trainer(ws, data, run_dir, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change,
                   copy_model=copy_model)


def prepare_training(plan: "FinetunePlan", run_dir: Path | None, *, resume: bool = False, adapt: bool = False,
                     overwrite: bool = False, allow_data_change: bool = False, force: bool = False) -> PreparedRun:
    """Check classes against the data (rebuilding the head when ``adapt``), load the model, open data, build the Trainer.

    Raises ``WorkbenchError`` with one clear message for a class-count mismatch, bad data or a busy run folder.
    """
    import torch

    from workbench.data import check_num_classes, open_images
    from workbench.preflight import check
    from workbench.workspace import Workspace

    images = open_images(plan.data, plan.base_dir)
    plan.model.num_classes = check_num_classes(images.classes, plan.model.num_classes, adapt)
    torch.manual_seed(plan.train.seed)  # a random-init model is reproducible too
    ws = Workspace.from_plan(plan)
    problems = plan_problems(ws, images)
    if not force:
        check(problems)  # before the run folder exists: a refused run leaves nothing behind
    # The workspace is this run's alone: the Trainer trains its model without copying it.
    trainer = build_trainer(ws, run_dir, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change,
                            images=images, copy_model=False)
    data: Any = trainer.data
    warnings = [f"{p} (--force: training anyway)" if p.is_error else str(p) for p in problems]
    # Preparing the data for the model can add notes (a table's standardization, feature scales).
    data_problems = list(images.problems) + [p for p in data.problems if p not in images.problems]
    return PreparedRun(trainer, data_problems, list(ws.backbone.notices), warnings, data.summary())


def plan_problems(ws: "Workspace", images: Any) -> "list[Problem]":
    """The preflight problems of ``ws``'s plan on these images (``workbench.data.open_images``)."""
    from workbench.preflight import DataFacts, preflight

    facts = DataFacts(len(images.classes), sum(train for train, _ in images.counts().values()))
    return preflight(ws.tree, ws.plan, ws.resolve(), ws.backbone.spec.num_classes, facts)
