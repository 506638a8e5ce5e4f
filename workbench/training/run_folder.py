"""Guarding a run folder: one training at a time, never a new run over an old one, no debris.

The lock is an OS file lock (``filelock``): the kernel releases it when the process dies,
so a folder killed with ``kill -9`` is free again and ``is_running`` stays truthful.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from workbench.errors import WorkbenchError

LOCK = ".workbench.lock"
CHECKPOINT = Path("checkpoints") / "last.pt"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
STATUS = "status.json"
# What a run writes; any of them means the folder holds a run.
RUN_FILES = ("project.toml", "spec.json", METRICS, WEIGHTS, "checkpoints", STATUS,
             "initial_trainable.safetensors", "initial_frozen.json")


class RunFolderBusy(WorkbenchError):
    """Another process is training in this run folder."""


class RunLock:
    """Held for as long as a training writes into ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.run_dir = run_dir
        self._lock = FileLock(str(run_dir / LOCK), timeout=0)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderBusy(f"{self.run_dir} is in use: another training is writing into it right now "
                                "(wait for it to finish, stop it, or choose another --out folder)") from None
        except OSError as exc:
            raise WorkbenchError(f"cannot lock {self.run_dir / LOCK}: {exc.strerror or exc}") from None

    def release(self) -> None:
        self._lock.release()


def is_running(run_dir: Path) -> bool:
    """True while a live process holds the folder's lock."""
    from filelock import FileLock, Timeout

    if not (run_dir / LOCK).exists():
        return False
    probe = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


def holds_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_FILES)


def check_writable_run_dir(run_dir: Path) -> None:
    """A clear error when ``run_dir`` cannot be a run folder (a file, under a file, read-only)."""
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise WorkbenchError(f"cannot use {run_dir} as a run folder: {parent} is a file")
            break
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None
    probe = run_dir / ".workbench-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise WorkbenchError(f"cannot write into the run folder {run_dir}: {exc.strerror or exc}") from None


def clear_run(run_dir: Path) -> None:
    """Remove an earlier run's files (``--overwrite``); other files in the folder are kept."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files of atomic writes interrupted by a kill (``.<name>.<random>.tmp``)."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def trim_metrics(path: Path, global_step: int, epoch: int) -> int:
    """Keep one record per step: drop records past the checkpoint (replayed on resume) and a torn last line.

    Returns the number of lines dropped. Rewritten atomically.
    """
    from workbench.atomic import atomic_write_text

    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1  # torn by a kill or a full disk
            continue
        if not isinstance(record, dict):
            dropped += 1
            continue
        if record.get("type") == "step" and record.get("global_step", 0) > global_step:
            dropped += 1
        elif record.get("type") == "epoch" and record.get("epoch", 0) >= epoch:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return dropped
