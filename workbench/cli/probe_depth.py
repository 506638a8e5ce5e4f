"""``workbench probe-depth``: a linear probe at every depth, to see where features stop transferring."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.common import schema_int, schema_range
from workbench.errors import WorkbenchError
from workbench.plan import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe-depth", help="a linear probe at every depth: where do features stop transferring?")
    p.add_argument("project", type=Path, help="project .toml (its model and data)")
    p.add_argument("--epochs", type=schema_int(TrainConfig, "epochs"), metavar="N",
                   help=f"probe epochs ({schema_range(TrainConfig, 'epochs')}; default: the project's [train] epochs)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the accuracy-by-depth chart (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print per depth the module path, feature width, "
                   "val top-1 and seconds")
    p.set_defaults(run=_cmd_probe_depth)


def _cmd_probe_depth(args: argparse.Namespace) -> int:
    from workbench.data import open_data
    from workbench.looking.pictures import depth_figure, picture_format, save
    from workbench.looking.probe_depth import probe_by_depth
    from workbench.project import load_project
    from workbench.workspace import Workspace

    if args.out is not None:
        picture_format(args.out)
    if not args.project.is_file():
        raise WorkbenchError(f"project file not found: {args.project}")
    plan = load_project(args.project)
    ws = Workspace.from_plan(plan, args.project)
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False)
    for problem in data.problems:
        print(problem, file=sys.stderr)
    result = probe_by_depth(ws, data, args.epochs, progress=lambda m: print(m, file=sys.stderr))
    if args.out is not None:
        save(depth_figure(result, f"{ws.backbone.spec.architecture} on {data.source}: linear probe by depth"), args.out)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
        return 0
    print(f"{ws.backbone.spec.architecture} ({ws.backbone.weights}) on {data.summary()}")
    print(f"features of every depth from one pass: {result.feature_seconds:.1f} s")
    print(f"  {'depth':<22} {'width':>6} {'val top-1':>10} {'params kept':>12} {'probe s':>8}")
    for r in result.results:
        print(f"  {r.label:<22} {r.width:>6} {r.val_top1:>10.1%} {r.params_kept:>12,} {r.seconds:>8.2f}")
    best = max(result.results, key=lambda r: r.val_top1)
    if best is not result.results[-1]:
        print(f"accuracy peaks at {best.label}: consider cutting there and retraining the rest")
    else:
        print("accuracy keeps rising to the last depth: freezing most of the model is a good start")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0
