"""A 5-strategy comparison on the built-in demo data (digits) against one full fine-tune.

    python benchmarks/bench_compare.py [--epochs N] [--strategies LIST] [--out DIR] [--device cpu]

Writes the demo recipe as a project file, runs ``workbench compare`` with the strategies
(default probe, freeze:3, full-lowlr, discriminative, gradual), then one full fine-tune
(strategy ``full``: the same training path, every layer trainable, the project's LR) on
the same data, and prints both wall times and their ratio. Each side runs with a fresh
feature-cache folder so the comparison pays for filling its own cache. Prints figures; no
timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategies", default="probe,freeze:3,full-lowlr,discriminative,gradual")
    parser.add_argument("--out", type=Path, default=None, help="folder for both comparisons (default: a temp folder)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batchnorm", choices=("demo", "freeze"), default="demo",
                        help="demo: the demo's policy (statistics adapt: no cacheable trunk with random init); "
                             "freeze: frozen layers' statistics frozen too, so frozen trunks are cached and shared")
    args = parser.parse_args()

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-compare-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["WORKBENCH_CACHE_DIR"] = str(root / "cache")  # a cold feature cache, shared by this comparison only
    from workbench.cli import main as workbench
    from workbench.demo import demo_plan
    from workbench.project import save_project

    plan = demo_plan()
    plan.train.device = args.device
    if args.batchnorm == "freeze":
        plan.freeze.batchnorm = "freeze"
    project = root / "demo.toml"
    save_project(plan, project)
    timings = {}
    for label, strategies in (("comparison", args.strategies), ("full fine-tune", "full")):
        out = root / ("compare" if label == "comparison" else "full")
        start = time.perf_counter()
        code = workbench(["compare", str(project), "--strategies", strategies, "--epochs", str(args.epochs),
                          "--out", str(out)])
        timings[label] = time.perf_counter() - start
        if code != 0:
            print(f"{label} exited with {code}", file=sys.stderr)
            return code
    results = json.loads((root / "compare" / "compare.json").read_text())
    n = len(results["strategies"])
    ratio = timings["comparison"] / timings["full fine-tune"]
    print()
    print(f"machine: {os.cpu_count()} CPU(s) (shared with other jobs: timings are indicative), device {args.device}, "
          f"BatchNorm policy {plan.freeze.batchnorm}")
    for s in results["strategies"]:
        print(f"  {s['name']:<16} wall {s['wall_s']:6.1f} s  best val top-1 {100 * s['val_top1_best']:5.1f}%  "
              f"cached {s['cached']}")
    print(f"{n}-strategy comparison ({args.strategies}), {args.epochs} epochs each: {timings['comparison']:.1f} s")
    print(f"one full fine-tune, {args.epochs} epochs: {timings['full fine-tune']:.1f} s")
    print(f"ratio: {ratio:.2f}x one full fine-tune")
    print(f"outputs: {root / 'compare'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
