"""Probe by depth against one plain-PyTorch linear probe at the last stage.

    python benchmarks/bench_probe_depth.py                  # efficientnet_lite0 (pretrained), 300 images, 96 px
    python benchmarks/bench_probe_depth.py --images 900 --side 128

Baseline (what one would write by hand): one pass of the frozen model over every image keeping only the
classifier's input (``forward_features`` + pooling), then one linear probe trained on it. Measured:
``workbench.looking.probe_depth.probe_by_depth`` (the same pass, every depth's pooled output kept, one
probe per depth). Both use the same data, optimiser settings and epochs; CPU seconds (user + system),
medians over the repetitions, in one process each way. The issue's budget: ratio ≤ 1.5. Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_probe_depth import CLASSES, write_patterns
    from workbench.data import open_data
    from workbench.looking.probe_depth import pooled, probe_by_depth, train_probe
    from workbench.project import load_project
    from workbench.workspace import Workspace

    folder = Path(tempfile.mkdtemp(prefix="bench-probe-depth-"))
    write_patterns(folder / "data", per_class=args.images // len(CLASSES), side=args.side)
    (folder / "p.toml").write_text("\n".join([
        "[model]", 'source = "timm"', 'name = "efficientnet_lite0"', "pretrained = true", "num_classes = 3",
        f"input_size = [3, {args.side}, {args.side}]", "[data]", 'path = "data"', "val_split = 0.3",
        "[train]", f"epochs = {args.epochs}", "batch_size = 32", "lr = 0.01", "augment = false", ""]))
    plan = load_project(folder / "p.toml")
    ws = Workspace.from_plan(plan, folder / "p.toml")
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False)
    model = ws.backbone.module.eval()
    [data.train[i] for i in range(len(data.train))]  # decoded once (kept in memory): neither side pays for it
    [data.val[i] for i in range(len(data.val))]  # type: ignore[index]

    def features(dataset):
        xs, ys = [], []
        loader = torch.utils.data.DataLoader(dataset, batch_size=32)
        with torch.inference_mode():
            for images, labels in loader:
                xs.append(pooled(model.forward_features(images)).float())
                ys.append(labels)
        return torch.cat(xs), torch.cat(ys)

    def baseline() -> float:
        train_x, train_y = features(data.train)
        val_x, val_y = features(data.val)
        return train_probe(train_x, train_y, val_x, val_y, len(data.classes), plan.train, args.epochs)

    def every_depth() -> float:
        return probe_by_depth(ws, data, args.epochs).results[-1].val_top1

    times: dict[str, list[float]] = {"one probe at the last stage": [], "probe by depth": []}
    accuracy = {}
    for _ in range(args.reps):
        for name, fn in (("one probe at the last stage", baseline), ("probe by depth", every_depth)):
            start = cpu()
            accuracy[name] = fn()
            times[name].append(cpu() - start)
    base, ours = (statistics.median(v) for v in times.values())
    print(f"efficientnet_lite0 pretrained, {len(data.train) + len(data.val)} images at {args.side} px, "
          f"{args.epochs} epochs, median of {args.reps}")
    for name, values in times.items():
        print(f"  {name:<28} {statistics.median(values):7.2f} CPU-s   last-stage val top-1 {accuracy[name]:.3f}")
    print(f"  ratio {ours / base:.2f} (budget ≤ 1.5)")


if __name__ == "__main__":
    main()
