"""The ``workbench`` command. Every GUI action has a headless equivalent here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.errors import WorkbenchError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        return _launch_gui(args)
    try:
        return args.run(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Model Surgery Workbench: inspect, freeze, "
                                     "fine-tune and export image backbones. Without a command, opens the window.")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("inspect", help="print a model's layer tree, parameter counts, groups and warnings")
    p.add_argument("model", help="timm model name, .onnx file, checkpoint (.safetensors/.pth) or project .toml")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.add_argument("--pretrained", action="store_true", help="load pretrained weights when cached or reachable")
    p.add_argument("--num-classes", type=int, help="replace the classifier with one of this many classes")
    p.add_argument("--input-size", type=_input_size, help="C,H,W for the shape pass (required for ONNX inputs with free dims)")
    p.add_argument("--depth", type=int, help="show modules down to this depth (root is 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_inspect)
    return parser


def _input_size(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, not {text!r}")
    return parts  # type: ignore[return-value]


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
        if args.arch and Path(args.model).suffix:
            request.source = "checkpoint"
        ws = Workspace.from_backbone(load_backbone(request))
    data = inspect_dict(ws, ws.resolve(), depth=args.depth)
    print(json.dumps(data, indent=2) if args.json else inspect_text(data))
    return 0


def _launch_gui(args: argparse.Namespace) -> int:
    print("the desktop window is not available yet; try `workbench inspect resnet18`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
