"""The workbench through its Python API (what a notebook does), for comparison with `workbench train`:
project file -> Workspace -> open_data -> Trainer.run(), in this process, no progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def mark(name: str, **info: object) -> None:
    print(f"@@ {name} {json.dumps(info)}", flush=True)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    import torch

    from workbench.data import open_data
    from workbench.project import load_project
    from workbench.training.reports import EpochReport, StateReport, StepReport
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace

    plan = load_project(cfg["project"])
    torch.manual_seed(plan.train.seed)
    ws = Workspace.from_plan(plan)
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=plan.train.augment)
    steps = 0
    for report in Trainer(ws, data, Path(cfg["out"])).run():
        if isinstance(report, StateReport) and report.kind == "started":
            mark("ready")
        elif isinstance(report, StepReport):
            steps += 1
            if steps == 1:
                mark("step1")
        elif isinstance(report, EpochReport):
            mark("epoch", epoch=report.epoch, val_acc=report.val_accuracy)


if __name__ == "__main__":
    main()
