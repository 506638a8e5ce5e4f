"""``workbench look``, ``workbench graph`` and ``workbench probe-depth``: what each layer sees, from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError


def _source_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE_OR_RUN",
                   help="timm model name, checkpoint, .onnx file, project .toml or run folder (as for predict)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``look``, ``graph``, ``probe-depth`` and ``features``."""
    add_look_parser(sub)
    add_graph_parser(sub)
    add_probe_depth_parser(sub)
    add_features_parser(sub)


def add_look_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("look", help="what a layer sees in an image: activation maps, or a class heatmap (--cam)")
    _source_argument(p)
    p.add_argument("image", metavar="IMAGE", help="the image file to look at")
    p.add_argument("--layer", metavar="PATH", help="module path (workbench inspect lists them); "
                   "with --cam the default is the last spatial layer")
    p.add_argument("--top", type=int, default=16, metavar="K", help="how many channels to show (default 16)")
    p.add_argument("--cam", action="store_true", help="a class heatmap instead of activation maps; for a run "
                   "folder, the starting and the trained model side by side")
    p.add_argument("--class", dest="class_index", type=int, metavar="N", help="the class (default: the predicted one)")
    from workbench.looking.heatmaps import METHODS

    p.add_argument("--method", choices=list(METHODS), default="gradcam", help="heatmap method (default gradcam)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the picture (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print JSON: the layer, its shape and the shown channels "
                   "(with --cam: class, layer and the heatmap as a 2-D list in [0, 1])")
    p.add_argument("--pretrained", action="store_true", help="use pretrained weights (an installed package or cache)")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.add_argument("--input-size", type=_input_size, help="C,H,W to feed the model (ONNX inputs with free dims)")
    p.set_defaults(run=_cmd_look)


def _input_size(text: str) -> tuple[int, int, int]:
    from workbench.cli import _input_size as parse

    return parse(text)


def _cmd_look(args: argparse.Namespace) -> int:
    from workbench.looking.inputs import feed, load_image
    from workbench.looking.pictures import picture_format
    from workbench.predict import load_predictor

    if args.top < 1:
        raise WorkbenchError(f"--top must be at least 1, not {args.top}")
    if not args.cam and not args.layer:
        raise WorkbenchError("say what to show: --layer PATH for activation maps, or --cam for a class heatmap")
    if not args.cam and args.class_index is not None:
        raise WorkbenchError("--class goes with --cam (activation maps do not depend on a class)")
    if args.out is not None:
        picture_format(args.out)
    image = load_image(args.image)  # before the (slower) model load
    predictor = load_predictor(args.source, args.pretrained, args.arch, args.input_size)
    for notice in predictor.notices:
        print(f"warning: {notice}" if "random" in notice else notice, file=sys.stderr)
    fed = feed(image, predictor.spec, name=args.image)
    if args.cam:
        return _cam(args, predictor, fed)
    from workbench.looking.activations import look

    result = look(predictor.module, args.layer, fed.tensor, args.top)
    if args.out is not None:
        from workbench.looking.pictures import activation_figure, save

        save(activation_figure(result, fed.pixels), args.out)
    if args.json:
        print(json.dumps({"image": args.image, **result.to_json()}, indent=2))
    else:
        print(f"{result.layer} ({result.type_name}) output {tuple(result.shape)}")
        if result.kind == "vector":
            for index, value in sorted(result.values, key=lambda iv: -abs(iv[1]))[: args.top]:
                print(f"  [{index}] {value:.4g}")
        else:
            print(f"  the {len(result.channels)} most active of {result.width} channels "
                  f"{'(patch tokens on their grid)' if result.kind == 'tokens' else ''}".rstrip())
            for c in result.channels:
                print(f"  #{c.index:<5} mean {c.mean:9.4g}   range {c.low:.3g} .. {c.high:.3g}")
        if args.out is not None:
            print(f"wrote {args.out}")
    return 0


def _cam(args: argparse.Namespace, predictor: Any, fed: Any) -> int:
    from workbench.looking.heatmaps import class_heatmap

    if Path(args.source).expanduser().is_dir():  # a run: its starting and trained model, the same class
        from workbench.looking.run_heatmaps import RunHeatmaps

        panels = RunHeatmaps(Path(args.source).expanduser(), args.method).for_image(
            Path(args.image), args.class_index, args.layer).panels
    else:
        panels = [(predictor.spec.architecture,
                   class_heatmap(predictor.module, fed.tensor, layer=args.layer, class_index=args.class_index,
                                 method=args.method, label_names=predictor.spec.label_names))]
    if args.out is not None:
        from workbench.looking.pictures import heatmap_figure, save

        save(heatmap_figure(panels, fed.pixels), args.out)
    if args.json:
        if len(panels) == 1:
            print(json.dumps({"image": args.image, **panels[0][1].to_json()}))
        else:
            print(json.dumps({"image": args.image, "models": [{"model": t, **h.to_json()} for t, h in panels]}))
    else:
        for title, heat in panels:
            w = heat.values.shape[1]
            print(f"{title}: {heat.method} at {heat.layer} (grid {heat.layer_grid[0]}×{heat.layer_grid[1]}) for class "
                  f"{heat.class_index} {heat.label!r} ({heat.score:.1%}); mass left/right half "
                  f"{heat.mass(cols=slice(0, w // 2)):.0%}/{heat.mass(cols=slice(w // 2, None)):.0%}")
        if args.out is not None:
            print(f"wrote {args.out}")
    return 0


def add_graph_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="the model's wiring as a graph (torch.fx, or the ONNX graph of an import)")
    _source_argument(p)
    p.add_argument("--full", action="store_true", help="every operation instead of blocks")
    p.add_argument("--expand", action="append", default=[], metavar="PATH", help="show this block's inside (repeatable)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the drawing (.svg, .png or .pdf)")
    p.add_argument("--json", action="store_true", help="print nodes (path, type, output shape, parameters, state) "
                   "and edges (from, to, skip)")
    p.add_argument("--pretrained", action="store_true", help="use pretrained weights")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.add_argument("--input-size", type=_input_size, help="C,H,W for the shape pass (ONNX inputs with free dims)")
    p.set_defaults(run=_cmd_graph)


def _cmd_graph(args: argparse.Namespace) -> int:
    import torch

    from workbench.looking.inputs import find_module
    from workbench.looking.model_graph import graph_figure, lay_out, model_graph
    from workbench.looking.pictures import picture_format, save
    from workbench.predict import load_predictor

    if args.out is not None:
        picture_format(args.out)
    predictor = load_predictor(args.source, args.pretrained, args.arch, args.input_size)
    for path in args.expand:
        find_module(predictor.module, path)
    example = torch.randn(1, *predictor.spec.input_size)
    graph = model_graph(predictor.module, example, collapse=not args.full, expanded=frozenset(args.expand))
    if args.out is not None:
        lay_out(graph)
        save(graph_figure(graph, f"{predictor.spec.architecture} ({predictor.weights})"), args.out)
    if args.json:
        print(json.dumps(graph.to_json(), indent=1))
    else:
        skips = len(graph.skips()) + sum(n.skips for n in graph.nodes)
        print(f"{predictor.spec.architecture}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
              f"{skips} skip connection{'s' if skips != 1 else ''} ({'blocks' if graph.collapsed else 'every operation'})")
        for n in graph.nodes:
            shape = "×".join(map(str, n.output_shape[1:])) if n.output_shape else "?"
            inside = f"  ({n.skips} skip inside)" if n.skips else ""
            print(f"  {n.id:<28} {n.type_name:<24} {shape:<14} {n.params:>11,}  {n.state}{inside}")
        if args.out is not None:
            print(f"wrote {args.out}")
    return 0


def add_probe_depth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe-depth", help="a linear probe at every depth: where do features stop transferring?")
    p.add_argument("project", type=Path, help="project .toml (its model and data)")
    p.add_argument("--epochs", type=int, metavar="N", help="probe epochs (default: the project's [train] epochs)")
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

    if args.epochs is not None and args.epochs < 1:
        raise WorkbenchError(f"--epochs must be at least 1, not {args.epochs}")
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


def add_features_parser(sub: argparse._SubParsersAction) -> None:
    from workbench.looking.feature_vis import STEPS

    p = sub.add_parser("features", help="feature visualisation: images that maximise channels of a layer")
    _source_argument(p)
    p.add_argument("--layer", required=True, metavar="PATH", help="module path (workbench inspect lists them)")
    p.add_argument("--channels", type=_channels, default=list(range(8)), metavar="LIST",
                   help="channel indices, e.g. 0,3,7 or 0-7 (default 0-7)")
    p.add_argument("--side", type=int, default=128, help="picture side in pixels (default 128)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"optimisation steps (default {STEPS})")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the pictures (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print each channel's final mean activation as JSON")
    p.add_argument("--pretrained", action="store_true", help="use pretrained weights")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.set_defaults(run=_cmd_features)


def _channels(text: str) -> list[int]:
    from workbench.looking.feature_vis import parse_channels

    try:
        return parse_channels(text)
    except WorkbenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_features(args: argparse.Namespace) -> int:
    import time

    from workbench.looking.feature_vis import visualise
    from workbench.looking.pictures import features_figure, picture_format, save
    from workbench.predict import _per_channel, load_predictor

    picture_format(args.out)
    predictor = load_predictor(args.source, args.pretrained, args.arch)
    spec = _per_channel(predictor.spec)
    start = time.perf_counter()

    def progress(step: int, total: int) -> bool:
        if step % 32 == 0 or step == total:
            print(f"step {step}/{total}", file=sys.stderr)
        return True

    pictures = visualise(predictor.module, args.layer, args.channels, spec.mean, spec.std, args.side, args.steps,
                         progress=progress)
    seconds = time.perf_counter() - start
    save(features_figure([(args.layer, pictures)]), args.out)
    if args.json:
        print(json.dumps({"layer": args.layer, "seconds": seconds,
                          "channels": [{"index": p.channel, "activation": p.activation} for p in pictures]}))
    else:
        print(f"{len(pictures)} channels of {args.layer} in {seconds:.1f} s; wrote {args.out}")
    return 0
