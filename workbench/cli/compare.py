"""``workbench compare``: train several strategies from one project and tabulate accuracy against cost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.common import schema_int, schema_range


def add_parser(sub: argparse._SubParsersAction) -> None:
    from workbench.compare_plans import strategy_help
    from workbench.plan import TrainConfig

    p = sub.add_parser("compare", help="train fine-tuning strategies side by side: accuracy, time, memory",
                       formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("project", type=Path, help="project .toml (model, data, split, seed, epochs; [[compare]] tables)")
    p.add_argument("--strategies", default="",
                   help="comma list of strategies, or [[compare]] table names\n(default: the project's [[compare]] "
                        "tables):\n" + "\n".join(f"  {line}" for line in strategy_help().splitlines()).replace("%", "%%"))
    # (argparse formats help with %: a plugin's "10%" would end `--help` in a traceback)
    p.add_argument("--epochs", type=schema_int(TrainConfig, "epochs"),
                   help=f"epochs per strategy ({schema_range(TrainConfig, 'epochs')}; default: the project's)")
    p.add_argument("--out", type=Path, help="a new folder for the runs (default: runs/compare-<timestamp> beside the project)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results here (Markdown and PNG beside it)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(run=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from workbench.atomic import check_file_target, check_folder_target
    from workbench.compare import Comparison, default_out_dir
    from workbench.compare_plans import parse_strategies
    from workbench.compare_report import text_table, write_outputs
    from workbench.project import load_project
    from workbench.stop_signals import StopOnSignals
    from workbench.training.reports import EpochReport, StateReport

    plan = load_project(args.project)
    if args.device:
        plan.train.device = args.device
    if args.json is not None:  # checked now: a comparison's hours are not lost to a bad output path at the end
        check_folder_target(args.json.parent, "--json")
        for target in (args.json, args.json.with_suffix(".md"), args.json.with_suffix(".png")):
            check_file_target(target)
    strategies = parse_strategies(args.strategies, plan.compare)
    comparison = Comparison(plan, strategies, args.out or default_out_dir(args.project), str(args.project),
                            epochs=args.epochs)
    with StopOnSignals(comparison.request_stop) as stop_signals:
        for event in comparison.run():
            tag = f"[{event.index + 1}/{event.count} {event.strategy}]"
            if event.kind == "start":
                print(f"{tag} training", flush=True)
            elif event.kind == "report" and isinstance(event.report, EpochReport):
                r = event.report
                val = f", val acc {r.val_accuracy:.1%}" if r.val_accuracy is not None else ""
                print(f"{tag} epoch {r.epoch + 1}/{r.epochs}: train acc {r.train_accuracy:.1%}{val} "
                      f"({r.seconds:.1f}s)", flush=True)
            elif event.kind == "report" and isinstance(event.report, StateReport) and event.report.kind == "notice":
                print(f"{tag} note: {event.report.message}", flush=True)
            elif event.kind == "done" and event.result is not None:
                print(f"{tag} done in {event.result.wall_s:.1f}s", flush=True)
            elif event.kind == "failed":
                print(f"{tag} failed: {event.error}", file=sys.stderr, flush=True)
    print()
    print(text_table(comparison.results))
    for path in write_outputs(comparison, args.json):
        print(f"wrote {path}")
    if comparison.failed:
        print(f"{len(comparison.failed)} strategy(ies) failed: "
              + "; ".join(f"{f['name']}: {f['error']}" for f in comparison.failed), file=sys.stderr)
    if comparison.stopped:
        return stop_signals.exit_code
    return 1 if comparison.failed else 0
