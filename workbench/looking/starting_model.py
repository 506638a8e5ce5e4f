"""The model a run started from: its recipe loaded as training loaded it, before any step."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.predict import Predictor


def starting_predictor(run_dir: str | Path) -> Predictor:
    """The run's starting weights: the recipe's source (pretrained or not) and its head, seeded as training seeds it.

    A new head is initialised from the run's seed (``prepare_training`` seeds before loading), so it is
    the very head training began with.
    """
    import torch

    from workbench.project import load_project
    from workbench.training.run_folder import RunDir
    from workbench.workspace import Workspace

    run = RunDir(run_dir)
    if not run.project.is_file():
        raise WorkbenchError(f"{run.path} is not a run folder: {run.project.name} is missing")
    plan = load_project(run.project)
    torch.manual_seed(plan.train.seed)
    ws = Workspace.from_plan(plan)
    return Predictor(ws.backbone.module.eval(), ws.backbone.spec, f"starting weights of run {run.path.name}",
                     list(ws.backbone.notices))
