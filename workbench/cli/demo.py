"""``workbench demo``: pretrained EfficientNet-Lite0 on scikit-learn's digits, in the window or the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import window
from workbench.cli.common import apply_overrides, check_run_dir, train_overrides
from workbench.cli.train import train_and_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the built-in demo: pretrained EfficientNet-Lite0 on scikit-learn's handwritten digits")
    p.add_argument("--headless", action="store_true", help="train and export in the terminal instead of the window")
    p.add_argument("--out", type=Path, help="run folder (default: ./runs/demo-<timestamp>)")
    train_overrides(p)
    p.set_defaults(run=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import demo_plan
    from workbench.run_folder import RunDir

    if not args.headless:
        return window.launch_gui(args, demo=True)
    plan = demo_plan()
    apply_overrides(plan, args)
    run_dir = args.out or RunDir.timestamped(Path("runs"), "demo-").path
    check_run_dir(run_dir)
    code = train_and_report(plan, run_dir, resume=False, adapt=False)
    if code != 0:
        return code
    from workbench.export import export_model
    from workbench.run_loading import load_run

    trained = load_run(run_dir)
    result = export_model(trained.module, trained.spec, "safetensors", run_dir / "export", trained.recipe_toml)
    print(f"exported: {result.message}")
    for path in result.paths:
        print(f"  {path}")
    return 0
