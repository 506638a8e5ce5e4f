"""``workbench evaluate``: a run's confusion matrix, per-class accuracy and most-confused classes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.common import int_at_least


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="a run on its validation set: per-class accuracy, confusion matrix, "
                                        "most-confused classes")
    p.add_argument("target", metavar="RUN_OR_PROJECT", type=Path,
                   help="a run folder, or a project .toml / folder of runs (its newest run with weights)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: classes, confusion_matrix, per_class, most_confused, mistakes (with top-5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--pairs", type=int_at_least(1), default=10, metavar="N",
                   help="how many most-confused class pairs to show (default 10)")
    p.set_defaults(run=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from workbench.evaluate import evaluate_run, format_text, resolve_target

    run_dir = resolve_target(args.target)
    if run_dir != args.target:
        print(f"run: {run_dir}", file=sys.stderr)
    evaluation = evaluate_run(run_dir, device=args.device)
    if args.json:
        print(json.dumps(evaluation.to_json(args.pairs), indent=2))
    else:
        print(format_text(evaluation, args.pairs))
    return 0
