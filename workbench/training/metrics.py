"""The ``MetricsWriter`` callback: ``metrics.jsonl``, one JSON line per step and per epoch.

Each line is ``{"type": "step" | "epoch", **the report's fields}``; ``workbench runs``, the
Runs tab and the Training tab's curves read it back (``workbench.run_catalog.read_metrics``).
"""

from __future__ import annotations

import json
from typing import IO

from workbench.training.callbacks import Callback
from workbench.training.reports import EpochReport, StepReport
from workbench.training.state import TrainState


class MetricsWriter(Callback):
    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def before_fit(self, t: TrainState) -> None:
        if not t.writes_files:
            return
        if t.resumed_from is not None:  # steps after the checkpoint are replayed: keep one record per step
            t.run_dir.trim_metrics(t.resumed_from["global_step"], t.resumed_from["epoch"])
        self._file = open(t.run_dir.metrics, "a", encoding="utf-8")

    def after_batch(self, t: TrainState) -> None:
        self._write("step", t.report)

    def after_epoch(self, t: TrainState) -> None:
        self._write("epoch", t.report)
        if self._file is not None:
            self._file.flush()

    def on_stop(self, t: TrainState) -> None:
        if self._file is not None:
            self._file.flush()

    def teardown(self, t: TrainState) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, kind: str, report: StepReport | EpochReport | None) -> None:
        if self._file is not None and report is not None:
            # Reports hold plain values only: no deep copy needed.
            self._file.write(json.dumps({"type": kind, **vars(report)}) + "\n")
