"""Feature visualisation time, and the picture of the feature hierarchy in docs/screenshots/.

    python benchmarks/bench_feature_vis.py                      # 8 channels of blocks.3 at 128 px: the budget case
    python benchmarks/bench_feature_vis.py --hierarchy docs/screenshots/17-feature-hierarchy.png

Pretrained EfficientNet-Lite0 (installed weights). Prints wall seconds for 8 channels of the middle block
(blocks.3) at 128 px with the default number of steps (the issue's budget: under 60 s on this CPU). With
--hierarchy it also optimises 8 channels each of an early (blocks.1), the middle and a late (blocks.5)
block and writes them as one picture, one row per block. Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--hierarchy", type=Path, help="also write the early/middle/late picture here")
    args = parser.parse_args()

    import torch

    from workbench.looking.feature_vis import STEPS, visualise
    from workbench.looking.pictures import features_figure, save
    from workbench.predict import load_predictor

    steps = args.steps or STEPS
    predictor = load_predictor("efficientnet_lite0", pretrained=True)
    spec = predictor.spec
    rows = []
    for layer in (["blocks.1", "blocks.3", "blocks.5"] if args.hierarchy else ["blocks.3"]):
        start = time.perf_counter()
        pictures = visualise(predictor.module, layer, list(range(8)), spec.mean, spec.std, args.side, steps)
        seconds = time.perf_counter() - start
        print(f"{layer}: 8 channels at {args.side} px, {steps} steps: {seconds:.1f} s "
              f"({torch.get_num_threads()} threads)", flush=True)
        rows.append((layer, pictures))
    if args.hierarchy:
        save(features_figure(rows), args.hierarchy)
        print(f"wrote {args.hierarchy}")


if __name__ == "__main__":
    main()
