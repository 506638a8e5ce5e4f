"""``workbench features``: feature visualisation, images that maximise channels of a layer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.common import model_options, source_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    from workbench.looking.feature_vis import STEPS

    p = sub.add_parser("features", help="feature visualisation: images that maximise channels of a layer")
    source_argument(p)
    p.add_argument("--layer", required=True, metavar="PATH", help="module path (workbench inspect lists them)")
    p.add_argument("--channels", type=_channels, default=list(range(8)), metavar="LIST",
                   help="channel indices, e.g. 0,3,7 or 0-7 (default 0-7)")
    p.add_argument("--side", type=int, default=128, help="picture side in pixels (default 128)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"optimisation steps (default {STEPS})")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the pictures (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print each channel's final mean activation as JSON")
    model_options(p)
    p.set_defaults(run=_cmd_features)


def _channels(text: str) -> list[int]:
    from workbench.errors import WorkbenchError
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
