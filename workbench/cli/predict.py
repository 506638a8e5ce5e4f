"""``workbench predict``: classify images with a model source or a run's trained weights."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.common import model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images: top-K labels with probabilities")
    p.add_argument("source", metavar="SOURCE_OR_RUN",
                   help="timm model name, checkpoint (.safetensors/.pth), .onnx file, project .toml or run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    p.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to show per image (default 5)")
    p.add_argument("--json", action="store_true",
                   help='print [{"image": ..., "top": [{"index", "label", "prob"}, ...]}, ...]')
    model_options(p, "C,H,W to feed the model (ONNX inputs with free dims)")
    p.set_defaults(run=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from workbench.errors import WorkbenchError
    from workbench.predict import check_images, format_text, load_predictor, predict

    if args.top < 1:
        raise WorkbenchError(f"--top must be at least 1, not {args.top}")
    check_images(args.images)  # before the (slower) model load
    predictor = load_predictor(args.source, args.pretrained, args.arch, args.input_size)
    for notice in predictor.notices:
        print(f"warning: {notice}" if "random" in notice else notice, file=sys.stderr)
    predictions = predict(predictor, args.images, args.top)
    if args.json:
        print(json.dumps([p.to_json() for p in predictions], indent=2))
    else:
        print(f"model: {predictor.spec.architecture} ({predictor.weights})")
        print()
        print(format_text(predictions))
    return 0
