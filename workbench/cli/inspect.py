"""``workbench inspect``: a model's layer tree, parameter counts, groups, warnings and cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.cli.common import input_size, int_at_least, schema_int, schema_range
from workbench.plan import ModelConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print a model's layer tree, parameter counts, groups and warnings")
    p.add_argument("model", help="timm model name, .onnx file, checkpoint (.safetensors/.pth) or project .toml")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.add_argument("--pretrained", action="store_true", help="load pretrained weights when cached or reachable")
    p.add_argument("--num-classes", type=schema_int(ModelConfig, "num_classes"),
                   help="replace the classifier with one of this many classes "
                        f"({schema_range(ModelConfig, 'num_classes')})")
    p.add_argument("--input-size", type=input_size, help="C,H,W for the shape pass (required for ONNX inputs with free dims)")
    p.add_argument("--depth", type=int_at_least(0), help="show modules down to this depth (root is 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from workbench.backbone import LoadRequest
    from workbench.project import load_project
    from workbench.report import inspect_dict, inspect_text
    from workbench.sources import load_backbone
    from workbench.workspace import Workspace

    if args.model.endswith(".toml"):
        plan = load_project(args.model)
        ws = Workspace.from_plan(plan, Path(args.model))
    else:
        request = LoadRequest(args.model, arch=args.arch, pretrained=args.pretrained,
                              num_classes=args.num_classes, input_size=args.input_size)
        ws = Workspace.from_backbone(load_backbone(request))
    data = inspect_dict(ws, ws.resolve(), depth=args.depth)
    from workbench.cost import plan_cost, workspace_cost_model

    data["cost"] = plan_cost(workspace_cost_model(ws), ws.resolve(), ws.plan.train).to_dict()
    print(json.dumps(data, indent=2) if args.json else inspect_text(data))
    return 0
