"""What several commands share: argument types, the training overrides and the run-folder check."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from workbench.errors import WorkbenchError


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low``."""

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


def schema_int(section: type, key: str) -> Callable[[str], int]:
    """An argparse type for a whole-number plan key: its limits are the schema's (``workbench.schema_limits``)."""

    def parse(text: str) -> int:
        from workbench.schema_limits import field_limits

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        problem = field_limits(section, key).problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = "integer"
    return parse


def schema_range(section: type, key: str) -> str:
    """A key's range in words for ``--help``, e.g. "1 to 100,000"."""
    from workbench.schema_limits import field_limits

    return field_limits(section, key).describe()


def input_size(text: str) -> tuple[int, int, int]:
    """An argparse type: C,H,W (or CxHxW) within the schema's channel and side limits."""
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
    return (parts[0], parts[1], parts[2])


def source_argument(p: argparse.ArgumentParser) -> None:
    """The SOURCE_OR_RUN argument of ``look``, ``graph`` and ``features``."""
    p.add_argument("source", metavar="SOURCE_OR_RUN",
                   help="timm model name, checkpoint, .onnx file, project .toml or run folder (as for predict)")


def model_options(p: argparse.ArgumentParser, input_size_help: str | None = None) -> None:
    """``--pretrained``, ``--arch`` and (with its help) ``--input-size``: how a SOURCE is loaded (``load_predictor``)."""
    p.add_argument("--pretrained", action="store_true",
                   help="use pretrained weights (an installed weights package, or the hub cache)")
    p.add_argument("--arch", help="timm architecture to load a checkpoint into")
    if input_size_help is not None:
        p.add_argument("--input-size", type=input_size, help=input_size_help)


def train_overrides(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--epochs``, ``--batch-size`` and ``--workers`` of ``train`` and ``demo``."""
    from workbench.plan import TrainConfig

    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--epochs", type=schema_int(TrainConfig, "epochs"),
                   help=f"[train] epochs ({schema_range(TrainConfig, 'epochs')})")
    p.add_argument("--batch-size", type=schema_int(TrainConfig, "batch_size"),
                   help=f"[train] batch_size ({schema_range(TrainConfig, 'batch_size')})")
    p.add_argument("--workers", type=schema_int(TrainConfig, "num_workers"),
                   help=f"data loader worker processes, [train] num_workers ({schema_range(TrainConfig, 'num_workers')})")


def apply_overrides(plan, args: argparse.Namespace) -> None:
    """Apply command-line overrides through the schema, so they are checked like the project file."""
    from dataclasses import replace

    changes = {"device": args.device, "epochs": args.epochs, "batch_size": args.batch_size,
               "num_workers": args.workers}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        plan.train = replace(plan.train, **changes)


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
