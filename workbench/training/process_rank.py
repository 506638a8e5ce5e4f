"""One ``torchrun`` process of a run the window launched (``workbench.multi_process_launch``).

``python -m workbench.training.process_rank PROJECT RUN_DIR CONTROL_DIR [--device D] [--resume]`` trains like
``workbench train`` and talks to the launcher through files in ``CONTROL_DIR`` (never the run folder):

- ``control``: ``run`` / ``pause`` / ``stop``, written by the launcher, read by rank 0 every
  ``POLL_S``; the Trainer makes every rank agree on the batch where a pause or stop happens.
- ``reports.jsonl``: rank 0's reports, one JSON line each (``report_to_line``), flushed per line:
  the window shows them as it shows a one-process run's.
- ``rank<N>.pid`` when the process starts, ``rank<N>.error.json`` when it fails (its message),
  so a rank that dies is named with what killed it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

CONTROL = "control"
REPORTS = "reports.jsonl"
START_WEIGHTS = "start_weights.pt"  # a new run starts from the window's model, not only from its recipe
POLL_S = 0.2


def pid_file(control_dir: Path, rank: int) -> Path:
    return control_dir / f"rank{rank}.pid"


def error_file(control_dir: Path, rank: int) -> Path:
    return control_dir / f"rank{rank}.error.json"


def report_to_line(report: Any) -> str:
    """A Trainer report as one JSON line: its class name and its fields (plain values only)."""
    return json.dumps({"report": type(report).__name__, **asdict(report)}) + "\n"


class ControlWatcher:
    """Rank 0 follows the launcher's ``control`` file: pause, resume and stop requests to the Trainer."""

    def __init__(self, trainer: Any, path: Path) -> None:
        self.trainer, self.path = trainer, path
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="control-file", daemon=True)
        self._last = "run"

    def __enter__(self) -> "ControlWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(POLL_S):
            try:
                wanted = self.path.read_text().strip()
            except OSError:
                continue
            if wanted == self._last:
                continue
            self._last = wanted
            if wanted == "stop":
                self.trainer.request_stop()
            elif wanted == "pause":
                self.trainer.request_pause()
            elif wanted == "run":
                self.trainer.request_resume()


def main(argv: list[str]) -> int:
    project, run_dir, control_dir = Path(argv[0]), Path(argv[1]), Path(argv[2])
    resume = "--resume" in argv[3:]
    device = argv[argv.index("--device") + 1] if "--device" in argv else None
    rank = int(os.environ.get("RANK", "0"))
    pid_file(control_dir, rank).write_text(str(os.getpid()))
    try:
        import torch

        from workbench.project import load_project
        from workbench.run_folder import RunDir
        from workbench.training.prepare import prepare_training

        plan = load_project(RunDir(run_dir).project if resume else project)  # a resumed run keeps its recipe
        if device is not None:
            plan.train.device = device
        trainer = prepare_training(plan, run_dir, resume=resume).trainer
        start = control_dir / START_WEIGHTS
        if not resume and start.is_file():
            trainer.model.load_state_dict(torch.load(start, weights_only=True))
        if rank != 0:
            for _ in trainer.run():
                pass
            return 0
        with open(control_dir / REPORTS, "a", encoding="utf-8") as out, \
                ControlWatcher(trainer, control_dir / CONTROL):
            for note in trainer.ws.backbone.notices:
                out.write(json.dumps({"report": "Notice", "message": note}) + "\n")
            for report in trainer.run():
                out.write(report_to_line(report))
                out.flush()
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded for the launcher, then re-raised
        from workbench.errors import WorkbenchError

        message = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        record = {"rank": rank, "time": time.time(), "message": message, "traceback": traceback.format_exc()}
        try:
            tmp = error_file(control_dir, rank).with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(error_file(control_dir, rank))
        except OSError:
            pass
        print(f"rank {rank}: {message}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
