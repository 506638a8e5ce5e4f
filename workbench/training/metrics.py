"""The ``MetricsWriter`` callback: ``metrics.jsonl``, one JSON line per step and per epoch.

Each line is ``{"type": "step" | "epoch", **the report's fields}``; ``workbench runs``, the
Runs tab and the Training tab's curves read it back (``workbench.run_catalog.read_metrics``).
Lines are written whole or not at all: a write that fails (a full disk) is cut back to the
last complete line before the error goes on.
"""

from __future__ import annotations

import errno
import json
import os
from typing import BinaryIO

from workbench.training.callbacks import Callback
from workbench.training.checkpoint_callback import CHECKPOINTING_ORDER
from workbench.training.reports import EpochReport, StepReport
from workbench.training.state import TrainState


class MetricsWriter(Callback):
    order = CHECKPOINTING_ORDER + 100  # after Checkpointing: an epoch's line names the checkpoint taken at its end
    FLUSH_BYTES = 8192  # lines are kept until this much is pending, or the epoch ends, or the run stops

    def __init__(self) -> None:
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._good = 0  # the file's length after the last complete write

    def before_fit(self, t: TrainState) -> None:
        if not t.writes_files:
            return
        if t.resumed_at is not None:  # steps after the checkpoint are replayed: keep one record per step
            t.run_dir.trim_metrics(t.resumed_at.global_step, t.resumed_at.epoch)
        self._file = open(t.run_dir.metrics, "ab", buffering=0)
        self._good = self._file.seek(0, os.SEEK_END)

    def after_batch(self, t: TrainState) -> None:
        self._write("step", t.report)

    def before_validate(self, t: TrainState) -> None:
        # The epoch's steps reach the disk before its checkpoint does (Checkpointing runs at the epoch's end):
        # a full disk then fails here, and the run resumes from a checkpoint its records reach.
        self._flush()

    def after_epoch(self, t: TrainState) -> None:
        self._write("epoch", t.report)
        self._flush()

    def on_stop(self, t: TrainState) -> None:
        self._flush()

    def teardown(self, t: TrainState) -> None:
        if self._file is not None:
            try:
                self._flush()
            except OSError:
                pass  # the error that ended the run is already on its way
            self._file.close()
            self._file = None

    def _write(self, kind: str, report: StepReport | EpochReport | None) -> None:
        if self._file is not None and report is not None:
            # Reports hold plain values only: no deep copy needed.
            line = (json.dumps({"type": kind, **vars(report)}) + "\n").encode("utf-8")
            self._pending.append(line)
            self._pending_bytes += len(line)
            if self._pending_bytes >= self.FLUSH_BYTES:
                self._flush()

    def _flush(self) -> None:
        """Append the pending lines; on failure cut the file back to its last complete line and raise."""
        if self._file is None or not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        self._pending_bytes = 0
        try:
            written = 0
            while written < len(data):
                n = self._file.write(data[written:])
                if not n:  # a short write that makes no progress: the disk is full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._file.name))
                written += n
        except OSError:
            os.ftruncate(self._file.fileno(), self._good)
            raise
        self._good += len(data)
