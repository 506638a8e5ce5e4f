"""``workbench train``: a project headless, with a progress bar, epoch lines, hints and stop signals."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workbench.cli.common import apply_overrides, check_run_dir, train_overrides
from workbench.errors import WorkbenchError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a project file headless (progress bar, metrics, checkpoints)")
    p.add_argument("project", nargs="?", help="project .toml (not needed with --resume)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>/ beside the project file)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run exactly where it stopped")
    train_overrides(p)
    p.add_argument("--adapt-head", action="store_true", help="replace the head when num_classes disagrees with the data")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in the --out folder")
    p.add_argument("--force", action="store_true",
                   help="train despite plan errors (e.g. an LR above 1, BatchNorm on one image per batch)")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue although the images, split or preprocessing changed")
    p.set_defaults(run=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from workbench.project import load_project
    from workbench.run_folder import RunDir

    if args.resume:
        plan = load_project(RunDir(args.resume).project)
        run_dir, resume = args.resume, True
    elif args.project:
        plan = load_project(args.project)
        run_dir, resume = args.out, False
    else:
        raise WorkbenchError("give a project file to train, or --resume RUN_DIR")
    if run_dir is not None:
        check_run_dir(run_dir)
    apply_overrides(plan, args)
    return train_and_report(plan, run_dir, resume, adapt=args.adapt_head, overwrite=args.overwrite,
                            allow_data_change=args.allow_data_change, force=args.force)


def train_and_report(plan, run_dir: Path | None, resume: bool, adapt: bool, overwrite: bool = False,
                     allow_data_change: bool = False, force: bool = False) -> int:
    """Open data and model, train with a progress bar, print epochs; Ctrl-C, SIGTERM or SIGHUP stops after the
    batch (exit 130, 143, 129: ``workbench.stop_signals``)."""
    from tqdm import tqdm

    from workbench.stop_signals import StopOnSignals
    from workbench.training.distributed import is_main_process
    from workbench.training.prepare import prepare_training
    from workbench.training.reports import EpochReport, StateReport, StepReport

    quiet = not is_main_process()  # under torchrun only rank 0 talks
    out = open(os.devnull, "w") if quiet else sys.stdout
    prepared = prepare_training(plan, run_dir, resume=resume, adapt=adapt, overwrite=overwrite,
                                allow_data_change=allow_data_change, force=force)
    for problem in prepared.data_problems:
        print(f"data: {problem}", file=sys.stderr)
    for notice in prepared.notices:
        print(f"note: {notice}", file=out)
    for warning in prepared.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(prepared.summary, file=out)
    trainer = prepared.trainer
    bar = None
    stopped = False
    hints = EpochHints(trainer)
    with StopOnSignals(trainer.request_stop) as stop_signals:
        try:
            for report in trainer.run():
                if isinstance(report, StepReport):
                    if bar is None:
                        bar = tqdm(total=report.batches, initial=report.batch - 1, desc=f"epoch {report.epoch + 1}",
                                   unit="batch", dynamic_ncols=True, file=out, disable=quiet)
                    lr = max(report.lrs.values()) if report.lrs else 0.0
                    bar.set_postfix(loss=f"{report.loss:.4f}", acc=f"{report.accuracy:.2f}", lr=f"{lr:.2e}",
                                    img_s=f"{report.images_per_s:.0f}", refresh=False)
                    bar.update(1)
                elif isinstance(report, EpochReport):
                    if bar is not None:
                        bar.close()
                        bar = None
                    val = (f"val loss {report.val_loss:.4f}, val acc {report.val_accuracy:.1%}"
                           + (f", top-5 {report.val_top5:.1%}" if report.val_top5 is not None else "")
                           if report.val_loss is not None else "no validation set")
                    print(f"epoch {report.epoch + 1}/{report.epochs}: train loss {report.train_loss:.4f}, "
                          f"train acc {report.train_accuracy:.1%}, {val} ({report.seconds:.1f}s)", file=out)
                    hint = hints.add(report)
                    if hint:
                        print(f"hint: {hint}", file=sys.stderr if not quiet else out)
                elif isinstance(report, StateReport):
                    if bar is not None:  # a message mid-epoch goes on its own line, under the bar
                        bar.close()
                        bar = None
                    print(report.message, file=out)
                    stopped = stopped or report.kind == "stopped"
        finally:
            if bar is not None:
                bar.close()
    print(f"run folder: {trainer.run_dir}", file=out)
    return stop_signals.exit_code if stopped else 0


class EpochHints:
    """Epoch reports in, a training hint (workbench.hints) out — each kind once per run."""

    def __init__(self, trainer) -> None:
        from workbench.hints import hint_context

        ws = trainer.ws
        self.num_classes = ws.backbone.spec.num_classes
        self.context = hint_context(ws)
        self.epochs: list[dict] = []
        self.shown = False

    def add(self, report) -> str | None:
        from dataclasses import asdict

        from workbench.hints import epoch_hint

        self.epochs.append(asdict(report))
        if self.shown:
            return None
        hint = epoch_hint(self.epochs, self.num_classes, **self.context)
        self.shown = hint is not None
        return hint
