"""The export report: each written format run on the validation inputs, against the PyTorch model.

Per format: top-1, agreement with PyTorch (% same top-1), accuracy delta in points, max |logit
difference|, file size, latency at batch 1 and throughput at batch 32 (medians of several timed
runs; onnxruntime's CPU provider for ONNX, torch eager otherwise). Written as ``export_report.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.atomic import atomic_write_text
from workbench.errors import WorkbenchError
from workbench.export_runners import Runner

if TYPE_CHECKING:
    import numpy as np


REPORT_NAME = "export_report.json"
REPORT_KIND = "workbench export report"


@dataclass
class Timing:
    runs: int = 5  # timed runs per figure (the median is reported)
    warmup: int = 2
    batch: int = 32


@dataclass
class FormatFigures:
    """One row of the report."""

    name: str  # e.g. "PyTorch (eager)", "ONNX int8"
    written: bool  # False: measured for comparison only (the reference)
    files: list[str]
    size_bytes: int | None
    top1: float | None  # None on synthetic inputs
    agreement: float  # share of inputs with PyTorch's top-1
    delta_points: float | None  # top1 - PyTorch top1, in percentage points
    max_abs_logit_diff: float
    latency_ms_b1: float | None
    throughput_b32: float | None  # images per second
    input: str = "float32 N×C×H×W, normalised"
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    format: str
    variant: str
    data: str
    inputs: int
    synthetic: bool
    rows: list[FormatFigures]
    conditions: str
    notes: list[str] = field(default_factory=list)
    accepted_drop: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": REPORT_KIND, "format": self.format, "variant": self.variant, "data": self.data,
                "inputs": self.inputs, "synthetic": self.synthetic, "conditions": self.conditions,
                "accepted_accuracy_drop": self.accepted_drop, "notes": self.notes,
                "rows": [_json_safe(asdict(row)) for row in self.rows]}


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """inf/NaN (a broken export's logits, a format not run back) become null: JSON has no such numbers."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def logits_of(runner: Runner, inputs: "np.ndarray", batch: int = 32) -> "np.ndarray":
    import numpy as np

    outputs = [np.asarray(runner(inputs[i:i + batch]), dtype=np.float32) for i in range(0, len(inputs), batch)]
    return np.concatenate(outputs)


def compare(name: str, logits: "np.ndarray", reference: "np.ndarray", labels: "np.ndarray | None",
            written: bool, files: list[Path], input_kind: str = "float32 N×C×H×W, normalised") -> FormatFigures:
    """Accuracy and agreement of ``logits`` against the PyTorch ``reference`` logits (timings added later)."""
    import numpy as np

    if logits.shape != reference.shape:
        raise WorkbenchError(f"{name} gives outputs of shape {logits.shape[1:]}, PyTorch {reference.shape[1:]}")
    predicted, expected = logits.argmax(1), reference.argmax(1)
    finite = bool(np.isfinite(logits).all())
    diff = float(np.max(np.abs(logits.astype(np.float64) - reference))) if finite else float("inf")
    top1 = float((predicted == labels).mean()) if labels is not None else None
    ref_top1 = float((expected == labels).mean()) if labels is not None else None
    delta = None if top1 is None or ref_top1 is None else round((top1 - ref_top1) * 100, 4)
    size = sum(_size(p) for p in files) if files else None
    figures = FormatFigures(name, written, [str(p) for p in files], size, top1, float((predicted == expected).mean()),
                            delta, diff, None, None, input_kind)
    if not finite:
        figures.notes.append("gives non-finite logits (inf/NaN) on some inputs")
    return figures


def time_runner(runner: Runner, one: "np.ndarray", timing: Timing) -> tuple[float, float]:
    """(median ms per image at batch 1, median images/s at batch ``timing.batch``)."""
    import numpy as np

    single = one[:1]
    reps = -(-timing.batch // len(one))
    batch = np.concatenate([one] * reps)[:timing.batch]
    latency = _median_seconds(runner, single, timing) * 1000
    throughput = timing.batch / _median_seconds(runner, batch, timing)
    return latency, throughput


def _median_seconds(runner: Runner, x: "np.ndarray", timing: Timing) -> float:
    for _ in range(timing.warmup):
        runner(x)
    times = []
    for _ in range(max(1, timing.runs)):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conditions(timing: Timing) -> str:
    import onnxruntime as ort
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__} CPU provider; "
            f"medians of {timing.runs} timed runs after {timing.warmup} warm-up; load on the machine not controlled")


def check_report_target(path: Path) -> None:
    """Refuse to replace a file at ``path`` that is not an export report this program wrote."""
    if path.is_dir():
        raise WorkbenchError(f"cannot write {path}: it is a folder")
    if not path.exists():
        return
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != REPORT_KIND:
        raise WorkbenchError(f"{path} exists and is not an export report written by the workbench; "
                             "move it away or export into another folder")


def write_report(report: ExportReport, path: Path) -> None:
    atomic_write_text(path, json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")


def format_text(report: ExportReport) -> str:
    """The report as a table for the terminal (and the Export dialog)."""
    lines = [f"export report — {report.data}"]
    head = f"  {'format':<40}{'top-1':>8}{'agree':>8}{'Δ pts':>8}{'max|Δlogit|':>13}{'size':>10}{'b1 ms':>9}{'b32 img/s':>11}"
    lines.append(head)
    for row in report.rows:
        top1 = f"{row.top1:.2%}" if row.top1 is not None else "—"
        delta = f"{row.delta_points:+.2f}" if row.delta_points is not None else "—"
        size = human_size(row.size_bytes) if row.size_bytes is not None else "—"
        lat = f"{row.latency_ms_b1:.2f}" if row.latency_ms_b1 is not None else "—"
        thr = f"{row.throughput_b32:.0f}" if row.throughput_b32 is not None else "—"
        name = row.name + ("" if row.written else " *")
        agree = f"{row.agreement:.1%}" if math.isfinite(row.agreement) else "—"
        diff = f"{row.max_abs_logit_diff:.3g}" if math.isfinite(row.max_abs_logit_diff) else "—"
        lines.append(f"  {name:<40}{top1:>8}{agree:>8}{delta:>8}{diff:>13}"
                     f"{size:>10}{lat:>9}{thr:>11}")
    if any(not row.written for row in report.rows):
        lines.append("  * reference, not written")
    for row in report.rows:
        lines += [f"  {row.name}: {note}" for note in row.notes]
    lines += [f"note: {note}" for note in report.notes]
    lines.append(f"measured on: {report.conditions}")
    return "\n".join(lines)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
