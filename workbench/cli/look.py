"""``workbench look``: what a layer sees in an image (activation maps), or a class heatmap (``--cam``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli.common import model_options, source_argument
from workbench.errors import WorkbenchError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("look", help="what a layer sees in an image: activation maps, or a class heatmap (--cam)")
    source_argument(p)
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
    model_options(p, "C,H,W to feed the model (ONNX inputs with free dims)")
    p.set_defaults(run=_cmd_look)


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
