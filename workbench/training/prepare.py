"""One path from a plan to a ready Trainer, shared by the CLI and the GUI."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.data import LabelledImages
    from workbench.plan import FinetunePlan
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
                  allow_data_change: bool = False, images: "LabelledImages | None" = None) -> "Trainer":
    """Open the plan's data for ``ws``'s model and build the Trainer (the run folder is checked here).

    ``images``: the plan's images, when the caller opened them already (a folder is listed only once).
    """
    from workbench.data import open_data
    from workbench.training.trainer import Trainer

    data = open_data(ws.plan.data, ws.plan.base_dir, ws.backbone.spec, augment=ws.plan.train.augment, images=images)
    return Trainer(ws, data, run_dir, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change)


def prepare_training(plan: "FinetunePlan", run_dir: Path | None, *, resume: bool = False, adapt: bool = False,
                     overwrite: bool = False, allow_data_change: bool = False) -> PreparedRun:
    """Check classes against the data (rebuilding the head when ``adapt``), load the model, open data, build the Trainer.

    Raises ``WorkbenchError`` with one clear message for a class-count mismatch, bad data or a busy run folder.
    """
    import torch

    from workbench.data import check_num_classes, open_images
    from workbench.workspace import Workspace

    images = open_images(plan.data, plan.base_dir)
    plan.model.num_classes = check_num_classes(images.classes, plan.model.num_classes, adapt)
    torch.manual_seed(plan.train.seed)  # a random-init model is reproducible too
    ws = Workspace.from_plan(plan)
    trainer = build_trainer(ws, run_dir, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change,
                            images=images)
    data: Any = trainer.data
    return PreparedRun(trainer, list(images.problems), list(ws.backbone.notices),
                       list(ws.resolve().warnings), data.summary())
