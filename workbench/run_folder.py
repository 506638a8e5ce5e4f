"""A run folder: its layout (``RunDir``, the one place that names a run's files) and its guards.

Guards: one training at a time, never a new run over an old one, no debris. The lock is an
OS file lock (``filelock``): the kernel releases it when the process dies, so a folder
killed with ``kill -9`` is free again and ``is_running`` stays truthful.

Torch-free: the run catalog lists a hundred runs through this module without importing torch.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.errors import TrainingError, WorkbenchError


class RunDir:
    """The layout of one run folder. Every file a run writes or reads is named here and only here."""

    PROJECT = "project.toml"  # the recipe as run (labels, absolute paths)
    SPEC = "spec.json"  # the model's ModelSpec
    METRICS = "metrics.jsonl"  # one JSON line per step and per epoch
    STATUS = "status.json"  # running / finished / stopped / failed
    WEIGHTS = "model.safetensors"  # the final weights (written at the end and on stop)
    CHECKPOINTS = "checkpoints"
    CHECKPOINT = f"{CHECKPOINTS}/last.pt"  # weights, optimizer, freeze state, schedule position, RNG, data
    LOCK = ".workbench.lock"
    START_WEIGHTS = "initial_trainable.safetensors"  # the run's start, for `workbench diff RUN`
    START_FINGERPRINTS = "initial_frozen.json"
    # What a run writes; any of them means the folder holds a run.
    RUN_FILES = (PROJECT, SPEC, METRICS, WEIGHTS, CHECKPOINTS, STATUS, START_WEIGHTS, START_FINGERPRINTS)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def timestamped(cls, root: Path, prefix: str = "") -> "RunDir":
        """A new run folder's place under ``root``: ``<prefix><YYYYmmdd-HHMMSS>``."""
        return cls(Path(root) / f"{prefix}{datetime.now():%Y%m%d-%H%M%S}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def project(self) -> Path:
        return self.path / self.PROJECT

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def status(self) -> Path:
        return self.path / self.STATUS

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK

    @property
    def start_weights(self) -> Path:
        return self.path / self.START_WEIGHTS

    @property
    def start_fingerprints(self) -> Path:
        return self.path / self.START_FINGERPRINTS

    # --- what the folder holds -------------------------------------------------------
    def is_run(self) -> bool:
        """A run folder as the catalog lists it: a recipe or metrics were written."""
        return self.path.is_dir() and (self.project.is_file() or self.metrics.is_file())

    def holds_run(self) -> bool:
        """Any file of a run (even a failed one's) is there: a new run must not land here."""
        return self.path.is_dir() and any((self.path / name).exists() for name in self.RUN_FILES)

    def has_weights(self) -> bool:
        return self.weights.is_file() or self.checkpoint.is_file()

    def is_running(self) -> bool:
        """True while a live process holds the folder's lock."""
        from filelock import FileLock, Timeout

        if not self.lock_file.exists():
            return False
        probe = FileLock(str(self.lock_file), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return True
        except OSError:
            return False
        probe.release()
        return False

    def weights_file(self) -> Path | None:
        """Where the run's latest weights are: the final file, else the last checkpoint."""
        for path in (self.weights, self.checkpoint):
            if path.is_file():
                return path
        return None

    # --- writing -----------------------------------------------------------------------
    def check_writable(self) -> None:
        """A clear error when the folder cannot be a run folder (a file, under a file, read-only)."""
        from workbench.atomic import check_folder_target

        run_dir = self.path
        check_folder_target(run_dir, "run folder")
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

    def clear(self) -> None:
        """Remove an earlier run's files (``--overwrite``); other files in the folder are kept."""
        for name in self.RUN_FILES:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def remove_stale_temp_files(self) -> list[Path]:
        """Temp files of atomic writes interrupted by a kill (``.<name>.<random>.tmp``)."""
        removed = []
        for folder in (self.path, self.path / self.CHECKPOINTS):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def write_status(self, state: str, message: str = "") -> None:
        """``status.json``: running / finished / stopped / failed (a kill leaves "running" with no lock: crashed)."""
        from workbench.atomic import atomic_write_text
        from workbench.errors import DiskFullError

        status: dict[str, Any] = {"state": state} if state == "running" else {"state": state, "message": message}
        text = json.dumps({**status, "time": datetime.now().isoformat(timespec="seconds")}) + "\n"
        try:
            atomic_write_text(self.status, text)
        except DiskFullError:
            self._rewrite_in_place(self.status, text.encode("utf-8"))

    @staticmethod
    def _rewrite_in_place(path: Path, data: bytes) -> None:
        """On a full disk: overwrite the existing small file in its own blocks (no new space for a temp file).

        Not atomic, but the status is one short line in one block; without it a run that failed on a
        full disk would read "running" forever.
        """
        from workbench.errors import DiskFullError

        if not path.is_file() or len(data) > 4096:
            raise DiskFullError(f"cannot write {path}: no space left on device")
        with open(path, "r+b") as fh:
            fh.write(data)
            fh.truncate(len(data))

    def claim(self, resume: bool = False, overwrite: bool = False) -> "RunLock":
        """Lock the folder for one training; refuse to mix a new run into an old one; sweep a killed run's debris."""
        import shlex

        self.check_writable()
        lock = RunLock(self)
        lock.acquire()
        try:
            if not resume and self.holds_run():
                if not overwrite:
                    raise TrainingError(f"{self.path} already holds a run; continue it with --resume "
                                        f"{shlex.quote(str(self.path))}, choose another --out folder, or pass "
                                        "--overwrite to replace it")
                self.clear()
            self.remove_stale_temp_files()
        except BaseException:
            lock.release()
            raise
        return lock

    def trim_metrics(self, global_step: int, epoch: int) -> int:
        """Keep one record per step: drop records past the checkpoint (replayed on resume) and a torn last line.

        Returns the number of lines dropped. Rewritten atomically.
        """
        from workbench.atomic import atomic_write_text

        path = self.metrics
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


class RunFolderBusy(WorkbenchError):
    """Another process is training in this run folder."""


class RunLock:
    """Held for as long as a training writes into ``run_dir``."""

    def __init__(self, run_dir: Path | RunDir) -> None:
        from filelock import FileLock

        self.run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self._lock = FileLock(str(self.run_dir.lock_file), timeout=0)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderBusy(f"{self.run_dir} is in use: another training is writing into it right now "
                                "(wait for it to finish, stop it, or choose another --out folder)") from None
        except OSError as exc:
            raise WorkbenchError(f"cannot lock {self.run_dir.lock_file}: {exc.strerror or exc}") from None

    def release(self) -> None:
        self._lock.release()


class RunClaim:
    """A training's hold on its run folder: the lock, and ``status.json`` following the outcome.

    ``with RunClaim(...) as claim:`` around the training; ``claim.ended(state, message)`` records
    a finished or stopped run. Leaving the block by an exception writes "failed"; by the consumer
    closing the report generator (``GeneratorExit``), "stopped". ``writes=False`` (not rank 0
    under torchrun) holds nothing and writes nothing.
    """

    def __init__(self, run_dir: RunDir, *, resume: bool, overwrite: bool, writes: bool = True) -> None:
        self.run_dir, self.resume, self.overwrite, self.writes = run_dir, resume, overwrite, writes
        self._lock: RunLock | None = None
        self._outcome = ("failed", "ended without a final report")
        self._before: str | None = None  # status.json before a resume, put back if the resume is refused
        self._started = False

    def __enter__(self) -> "RunClaim":
        if self.writes:
            self._lock = self.run_dir.claim(self.resume, self.overwrite)
            if self.resume and self.run_dir.status.is_file():
                try:
                    self._before = self.run_dir.status.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    self._before = None
        self._write("running")
        return self

    def started(self) -> None:
        """The run's checks passed and training begins: from here a failure is the run's."""
        self._started = True

    def ended(self, state: str, message: str) -> None:
        self._outcome = (state, message)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        state, message = self._outcome
        if exc is not None and not self._started and self._before is not None:
            # A refused resume (changed recipe or data) leaves the run as it was: finished stays finished.
            from workbench.atomic import atomic_write_text

            try:
                atomic_write_text(self.run_dir.status, self._before)
            except WorkbenchError:
                pass
            if self._lock is not None:
                self._lock.release()
            return
        if exc_type is GeneratorExit:
            state, message = "stopped", "the consumer stopped reading reports"
        elif exc is not None:
            state, message = "failed", str(exc) or type(exc).__name__
        self._write(state, message)
        if self._lock is not None:
            self._lock.release()

    def _write(self, state: str, message: str = "") -> None:
        if not self.writes or not self.run_dir.path.is_dir():
            return
        try:
            self.run_dir.write_status(state, message)
        except WorkbenchError:
            pass  # a full disk must not hide the training error being raised


def is_running(run_dir: Path) -> bool:
    """True while a live process holds the folder's lock."""
    return RunDir(run_dir).is_running()
