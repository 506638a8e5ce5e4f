"""``workbench runs``: the runs of a project or folder, with status, progress and accuracy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list a project's runs: status, epochs, best/last val accuracy, recipe changes")
    p.add_argument("target", nargs="?", type=Path, default=Path("."),
                   help="project .toml (its runs/ folder), a folder of runs, or one run folder (default: .)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_runs)


def _cmd_runs(args: argparse.Namespace) -> int:
    from workbench.run_catalog import format_table, list_runs

    plan = None
    if args.target.is_file() and args.target.suffix == ".toml":
        from workbench.project import load_project

        plan = load_project(args.target)
    runs = list_runs(args.target, plan)
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=2))
    else:
        print(format_table(runs))
    return 0
