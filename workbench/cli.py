"""The ``workbench`` command. Every GUI action has a headless equivalent here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from workbench import cli_plugins, cli_schema
from workbench.errors import WorkbenchError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _file_means_open(parser, sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, message already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if not getattr(args, "command", None):
            return _launch_gui(args)
        return args.run(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _file_means_open(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``workbench FILE`` (a desktop entry's ``%f``, "Open with") is ``workbench open FILE``."""
    commands = {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices}
    if len(argv) == 1 and argv[0] not in commands and Path(argv[0]).is_file():
        return ["open", argv[0]]
    return argv


class _Parser(argparse.ArgumentParser):
    """A bad argument is one ``error:`` line (exit 2), like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description="Model Surgery Workbench: inspect, freeze, "
                                     "fine-tune and export image backbones. Without a command, opens the window.")
    sub = parser.add_subparsers(dest="command")
    cli_plugins.add_parser(sub)

    p = sub.add_parser("inspect", help="print a model's layer tree, parameter counts, groups and warnings")
    p.add_argument("model", help="timm model name, .onnx file, checkpoint (.safetensors/.pth) or project .toml")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    p.add_argument("--pretrained", action="store_true", help="load pretrained weights when cached or reachable")
    p.add_argument("--num-classes", type=_int_at_least(1), help="replace the classifier with one of this many classes")
    p.add_argument("--input-size", type=_input_size, help="C,H,W for the shape pass (required for ONNX inputs with free dims)")
    p.add_argument("--depth", type=_int_at_least(0), help="show modules down to this depth (root is 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_cmd_inspect)

    p = sub.add_parser("train", help="train a project file headless (progress bar, metrics, checkpoints)")
    p.add_argument("project", nargs="?", help="project .toml (not needed with --resume)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>/ beside the project file)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run exactly where it stopped")
    _train_overrides(p)
    p.add_argument("--adapt-head", action="store_true", help="replace the head when num_classes disagrees with the data")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in the --out folder")
    p.add_argument("--force", action="store_true",
                   help="train despite plan errors (e.g. an LR above 1, BatchNorm on one image per batch)")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue although the images, split or preprocessing changed")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("demo", help="the built-in demo: pretrained EfficientNet-Lite0 on scikit-learn's handwritten digits")
    p.add_argument("--headless", action="store_true", help="train and export in the terminal instead of the window")
    p.add_argument("--out", type=Path, help="run folder (default: ./runs/demo-<timestamp>)")
    _train_overrides(p)
    p.set_defaults(run=_cmd_demo)

    from workbench import cli_evaluate, cli_export, cli_predict, cli_runs

    cli_runs.add_parser(sub)
    cli_predict.add_parser(sub)
    cli_evaluate.add_parser(sub)
    cli_export.add_parser(sub)

    p = sub.add_parser("open", help="open a project file (or a model file) in the window; `workbench FILE` is the same")
    p.add_argument("project", type=Path)
    p.set_defaults(run=lambda a: _launch_gui(a, project=a.project))
    from workbench import cli_compare, cli_diff  # light: their heavy imports happen when they run

    cli_diff.add_parser(sub)
    cli_compare.add_parser(sub)
    cli_schema.add_parser(sub)
    from workbench import cli_look

    cli_look.add_parsers(sub)
    return parser


def _train_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--epochs", type=_int_at_least(1))
    p.add_argument("--batch-size", type=_int_at_least(1))
    p.add_argument("--workers", type=_int_at_least(0), help="data loader worker processes")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _apply_overrides(plan, args: argparse.Namespace) -> None:
    """Apply command-line overrides through the schema, so they are checked like the project file."""
    from dataclasses import replace

    changes = {"device": args.device, "epochs": args.epochs, "batch_size": args.batch_size,
               "num_workers": args.workers}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        plan.train = replace(plan.train, **changes)


def _input_size(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    from workbench.plan import MAX_CHANNELS, MAX_SIDE

    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, not {text!r}")
    if parts[0] > MAX_CHANNELS or max(parts[1:]) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"{text!r} is too large: at most {MAX_CHANNELS} channels and "
                                         f"{MAX_SIDE} pixels a side")
    return parts


def _cmd_inspect(args: argparse.Namespace) -> int:
    from workbench.backbone import LoadRequest
    from workbench.project import load_project
    from workbench.report import inspect_dict, inspect_text
    from workbench.sources import load_backbone
    from workbench.workspace import Workspace

    if args.model.endswith(".toml"):
        plan = load_project(args.model)
        ws = Workspace.from_plan(plan, Path(args.model))
    else:
        request = LoadRequest(args.model, arch=args.arch, pretrained=args.pretrained,
                              num_classes=args.num_classes, input_size=args.input_size)
        ws = Workspace.from_backbone(load_backbone(request))
    data = inspect_dict(ws, ws.resolve(), depth=args.depth)
    from workbench.cost import plan_cost, workspace_cost_model

    data["cost"] = plan_cost(workspace_cost_model(ws), ws.resolve(), ws.plan.train).to_dict()
    print(json.dumps(data, indent=2) if args.json else inspect_text(data))
    return 0


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
    _apply_overrides(plan, args)
    return _train_and_report(plan, run_dir, resume, adapt=args.adapt_head, overwrite=args.overwrite,
                             allow_data_change=args.allow_data_change, force=args.force)


def check_run_dir(run_dir: Path) -> None:
    """Fail before any work if the run folder cannot be a writable folder (a file, a device, read-only)."""
    from workbench.atomic import check_folder_target

    check_folder_target(run_dir, "--out")
    existing = next((p for p in (run_dir, *run_dir.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        why = "is on a read-only file system" if read_only else "is not writable"
        raise WorkbenchError(f"--out {run_dir}: {existing} {why}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import demo_plan
    from workbench.run_folder import RunDir

    if not args.headless:
        return _launch_gui(args, demo=True)
    plan = demo_plan()
    _apply_overrides(plan, args)
    run_dir = args.out or RunDir.timestamped(Path("runs"), "demo-").path
    check_run_dir(run_dir)
    code = _train_and_report(plan, run_dir, resume=False, adapt=False)
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


def _train_and_report(plan, run_dir: Path | None, resume: bool, adapt: bool, overwrite: bool = False,
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
    hints = _EpochHints(trainer)
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


class _EpochHints:
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

        from workbench.hints import stuck_at_chance

        self.epochs.append(asdict(report))
        if self.shown:
            return None
        hint = stuck_at_chance(self.epochs, self.num_classes, **self.context)
        self.shown = hint is not None
        return hint


_gui_launched = False  # set once the window has run in this process (see ``run``)


def _launch_gui(args: argparse.Namespace, project: Path | None = None, demo: bool = False) -> int:
    global _gui_launched
    # The core never imports the GUI: the window is found through the ``workbench.gui`` entry point.
    from importlib.metadata import entry_points

    found = sorted(entry_points(group="workbench.gui"), key=lambda ep: ep.name)
    if not found:
        raise WorkbenchError("no GUI is installed (pip install 'model-surgery-workbench[gui]'); "
                             "every action is available as a command, see workbench --help")
    launch = found[0].load()
    _gui_launched = True
    return int(launch(project=project, demo=demo))


def run() -> int:
    """The ``workbench`` console script: ``main``, then the process ends without interpreter teardown.

    With torch and timm loaded, CPython's teardown (its last garbage collection, module
    clearing, torch's C++ static destructors, which page in code no command ran) costs
    ~0.2-1 CPU-s and raises the process's peak memory by 30-100 MiB after the work is done
    (measured with ``wait4``, ``benchmarks/RESULTS.md`` §3). Every file the command writes is
    closed by then; ``_end_process`` joins other threads, runs the ``atexit`` handlers (log
    flushing, lock release, loader worker shutdown) and flushes the output first. Not after
    the window (Qt objects are left to their own teardown order), and not in ``main`` (tests
    call it in-process).
    """
    code = main()
    if not _gui_launched:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """Exit now with ``code``: other threads joined, ``atexit`` handlers run, output flushed; no teardown."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what CPython's own exit runs, in order (registered handlers, last first)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(run())
