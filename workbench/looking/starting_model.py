"""The model a run started from: the trained model with the run's recorded start put back."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.predict import Predictor


def starting_predictor(run_dir: str | Path) -> Predictor:
    """The run's starting weights: every tensor training could change is read from the run's record of its start.

    The other tensors never changed (frozen means bit-identical), so the trained model with the recorded
    start loaded over it is the very model training began with.
    """
    from safetensors.torch import load_file

    from workbench.run_folder import RunDir
    from workbench.run_loading import load_run

    run = RunDir(run_dir)
    trained = load_run(run_dir)
    if not run.start_weights.is_file():
        raise WorkbenchError(f"{run.path} has no record of its start ({RunDir.START_WEIGHTS}): the run was "
                             "written by an older workbench, so its starting model cannot be shown")
    try:
        start = load_file(str(run.start_weights))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise WorkbenchError(f"cannot read {run.start_weights}: {str(exc).splitlines()[0]}") from None
    known = trained.module.state_dict()
    foreign = [k for k in start if k not in known or known[k].shape != start[k].shape]
    if foreign:
        raise WorkbenchError(f"{run.start_weights} does not fit the run's model ({len(foreign)} tensors, "
                             f"e.g. {foreign[0]})")
    trained.module.load_state_dict(start, strict=False)
    return Predictor(trained.module.eval(), trained.spec, f"starting weights of run {run.path.name}")
