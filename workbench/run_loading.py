"""Loading a finished (or stopped) run back: its model with the run's weights, or a workspace to continue from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.plan import FinetunePlan
from workbench.run_folder import RunDir
from workbench.workspace import TrainedModel

if TYPE_CHECKING:

    from workbench.training.checkpoint_file import Checkpoint
    from workbench.workspace import Workspace


def load_run(run_dir: str | Path) -> TrainedModel:
    """Rebuild the run's architecture (never downloading) and load its final weights."""
    ws, recipe = load_run_workspace(run_dir)
    return TrainedModel(ws.backbone.module.eval(), ws.backbone.spec, ws.plan, recipe)


def load_run_workspace(run_dir: str | Path) -> "tuple[Workspace, str]":
    """The run as a workspace to continue from: its recipe (freeze state included), labels and weights.

    The weights are the final ones, or the last good checkpoint's for a run that stopped or crashed.
    Returns the workspace and the run's recipe text.
    """
    from safetensors.torch import load_file

    from workbench.layer_tree import refresh_bn_untrained
    from workbench.project import load_project
    from workbench.workspace import Workspace

    run = RunDir(run_dir)
    for path in (run.project, run.spec):
        if not path.is_file():
            raise WorkbenchError(f"{run.path} is not a finished run folder: {path.name} is missing "
                                 "(train first, or point at the folder `workbench train` printed)")
    plan = load_project(run.project)
    plan.model.pretrained = False  # the run's weights replace whatever was pretrained
    try:
        spec_data = json.loads(run.spec.read_text())
    except ValueError as exc:
        raise WorkbenchError(f"{run.spec} is not valid JSON ({exc})") from None
    if not isinstance(spec_data, dict):
        raise WorkbenchError(f"{run.spec} is damaged: expected a JSON object, not a {type(spec_data).__name__}")
    saved: Checkpoint | None = None
    if run.weights.is_file():
        try:
            state = load_file(str(run.weights))
        except Exception as exc:  # safetensors raises its own error type for truncated/corrupt files
            raise WorkbenchError(f"cannot read {run.weights}: {str(exc).splitlines()[0]} (a truncated or "
                                 "corrupt file; delete it and `workbench train --resume` rewrites it from the "
                                 "checkpoint)") from None
    elif run.checkpoint.is_file():  # a run that stopped or failed mid-way: its last good checkpoint
        from workbench.training.checkpoint_file import load_checkpoint

        saved = load_checkpoint(run.checkpoint)
        state = saved.model
    else:
        raise WorkbenchError(f"{run.path} has no weights yet ({RunDir.WEIGHTS} and {RunDir.CHECKPOINT} are missing)")
    ws = Workspace.from_plan(plan)
    from workbench.state_fit import state_mismatch

    mismatch = state_mismatch(ws.backbone.module, state)
    if mismatch:
        weights = run.weights if saved is None else run.checkpoint
        raise WorkbenchError(f"the weights in {weights} do not fit the recipe in {run.project}: {mismatch}. The "
                             "recipe was edited after training: restore it, or train the edited recipe anew "
                             f"(workbench train {run.project} --out {run.path} --overwrite)")
    ws.backbone.module.load_state_dict(state)
    refresh_bn_untrained(ws.backbone.module, ws.tree)  # the tree was built on the untrained model
    spec = ws.backbone.spec
    if isinstance(spec_data, dict):
        spec.label_names = spec_data.get("label_names") or spec.label_names
        spec.pretrained = bool(spec_data.get("pretrained", False))
        mean, std = spec_data.get("mean"), spec_data.get("std")
        if isinstance(mean, list) and isinstance(std, list) and _numbers(mean) and _numbers(std):
            # a feature table's standardization comes from the data, not from rebuilding the model
            spec.mean, spec.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    else:
        raise WorkbenchError(f"{run.spec} is not a model description (a JSON object was expected)")
    if saved is not None:  # where gradual unfreezing had got to
        plan.freeze.frozen, plan.freeze.unfrozen = list(saved.frozen), list(saved.unfrozen)
    return ws, run.project.read_text()


def plan_for_project(plan: FinetunePlan, project_path: Path | None) -> FinetunePlan:
    """A run's recipe as the plan of the project it belongs to (``project_path``; None: no project file).

    A run's recipe lives inside the run folder, so its relative paths and its ``base_dir`` point there:
    a run started from it unchanged would land in ``<run>/runs/``, where nobody lists it. The copy
    returned has the same data paths made relative to the project's folder (absolute without a project).
    """
    from workbench.project import rebase_plan
    from workbench.sources import capabilities

    if project_path is not None:
        return rebase_plan(plan, Path(project_path).parent.resolve())
    out = plan.copy()
    if capabilities(out.model.source).takes_files and out.model.name:
        out.model.name = str(plan.resolve_path(out.model.name))
    for key in ("path", "val_path"):
        value = plan.resolve_path(getattr(out.data, key))
        setattr(out.data, key, None if value is None else str(value.resolve()))
    out.base_dir = None
    return out


def _numbers(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, (int, float)) for v in value)
