"""``workbench diff``: per-module drift between two runs / checkpoints / exports, or a run and its start."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="per-module drift ‖W′−W‖/‖W‖ between two weight sets (or a run and its start)")
    p.add_argument("a", help="run folder, export folder, .safetensors or .pt/.pth checkpoint")
    p.add_argument("b", nargs="?", help="the same kinds; without it, A (a run folder) is compared with its own start")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_diff)


def _cmd_diff(args: argparse.Namespace) -> int:
    from workbench.drift import diff_sources

    report = diff_sources(args.a, args.b)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 1 if report.problems else 0
