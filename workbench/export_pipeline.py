"""An export that proves itself: write a format (and its INT8/fp16/preprocessing variant), run it on the
validation inputs, refuse a lossy variant that drops accuracy, then move the files and the report into place.

Everything is made and measured in a scratch folder beside the target first, so a refused or failed
export writes nothing. The exporter plugins are called through ``export_model`` unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.atomic import atomic_path, scratch_folder
from workbench.errors import WorkbenchError
from workbench.export import ExportResult, check_export_target, export_model
from workbench.export_data import ReportData, plan_data, synthetic_data
from workbench.export_report import (
    REPORT_NAME,
    ExportReport,
    FormatFigures,
    Timing,
    check_report_target,
    compare,
    conditions,
    logits_of,
    time_runner,
    write_report,
)
from workbench.export_runners import Runner, ort_runner, torch_runner
from workbench.onnx_variants import CALIBRATION_METHODS
from workbench.plugins import EXPORTERS, registry
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

    from workbench.plan import FinetunePlan

QUANTIZE_CHOICES = ("int8", "int8-dynamic")
PRECISIONS = ("fp32", "fp16")
DEFAULT_MAX_DROP_POINTS = 1.0
MAX_DROP_RANGE = (0.0, 100.0)  # --max-accuracy-drop, in points: the CLI check and the Export dialog's box
UINT8_INPUT = "uint8 N×H×W×C, 0–255 (preprocessing inside)"
Say = Callable[[str], None]


class ExportRefused(WorkbenchError):
    """A lossy variant failed the accuracy check; ``report`` holds the figures (nothing was written)."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ExportOptions:
    """What to write besides the plain format, and how the report judges it."""

    quantize: str | None = None  # "int8" (static QDQ) or "int8-dynamic"
    precision: str = "fp32"  # or "fp16"
    keep_io_float32: bool = False  # fp16 only: inputs/outputs stay float32
    with_preprocessing: bool = False  # uint8 NHWC in, scaling and mean/std inside the graph
    calibration_images: int | None = None  # None: up to DEFAULT_CALIBRATION_IMAGES training images
    calibration_method: str = "minmax"  # or "entropy", "percentile" (onnxruntime's calibrators)
    max_accuracy_drop: float = DEFAULT_MAX_DROP_POINTS  # points of top-1 a lossy variant may lose
    accept_accuracy_drop: bool = False
    tolerance: float | None = None  # the exporter's fp32 parity tolerance
    timing: Timing = field(default_factory=Timing)

    @property
    def lossy(self) -> bool:
        return self.quantize is not None or self.precision == "fp16"

    def variant(self) -> str:
        parts = [self.quantize or self.precision]
        if self.precision == "fp16" and self.keep_io_float32:
            parts.append("float32 io")
        if self.with_preprocessing:
            parts.append("with preprocessing")
        return ", ".join(parts)

    def check(self, fmt: str, spec: ModelSpec) -> None:
        """One clear refusal per impossible combination, before anything is computed."""
        if self.quantize is not None and self.quantize not in QUANTIZE_CHOICES:
            raise WorkbenchError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize!r}")
        if self.precision not in PRECISIONS:
            raise WorkbenchError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        asked = [flag for flag, on in (("--quantize", self.quantize is not None), ("--precision fp16",
                 self.precision == "fp16"), ("--with-preprocessing", self.with_preprocessing)) if on]
        if asked and not makes_onnx_variants(registry().get(EXPORTERS, fmt)):
            onnx = [name for name, e in sorted(registry().plugins(EXPORTERS).items()) if makes_onnx_variants(e)]
            raise WorkbenchError(f"{' and '.join(asked)}: for --format {' or '.join(onnx)} only, not {fmt}")
        if self.quantize is not None and self.precision == "fp16":
            raise WorkbenchError("--quantize and --precision fp16 are two different variants: choose one")
        if self.keep_io_float32 and self.precision != "fp16":
            raise WorkbenchError("--keep-io-float32 applies to --precision fp16 only")
        if self.calibration_images is not None and self.quantize != "int8":
            raise WorkbenchError("--calibration-images applies to --quantize int8 (static) only")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise WorkbenchError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                                 f"got {self.calibration_method!r}")
        if self.calibration_method != "minmax" and self.quantize != "int8":
            raise WorkbenchError("--calibration-method applies to --quantize int8 (static) only")
        low, high = MAX_DROP_RANGE
        if not low <= self.max_accuracy_drop <= high:
            raise WorkbenchError(f"--max-accuracy-drop must be {low:g}-{high:g} points, got {self.max_accuracy_drop:g}")
        if self.with_preprocessing and len(spec.input_size) != 3:
            raise WorkbenchError(f"--with-preprocessing is for image models: {spec.architecture} takes feature "
                                 f"vectors {tuple(spec.input_size)}, whose standardization has no image layout or "
                                 "0-255 scale to take over; feed the rows as the model's metadata describes")


@dataclass
class ExportOutcome:
    result: ExportResult
    report: ExportReport
    report_path: Path


def report_data(plan: "FinetunePlan | None", spec: ModelSpec, options: ExportOptions,
                no_data_reason: str = "no dataset") -> ReportData:
    """The run's validation (and calibration) inputs; synthetic inputs where there are none and that is enough."""
    needs_images = options.quantize is not None
    if plan is None:
        if needs_images:
            raise WorkbenchError(f"--quantize {options.quantize} needs the run's training images to calibrate and "
                                 f"labelled validation images to check accuracy; this model has none ({no_data_reason}): "
                                 "load a dataset, or export fp32/fp16")
        return synthetic_data(spec, no_data_reason)
    try:
        return plan_data(plan, spec, options.calibration_images, need_calibration=options.quantize == "int8")
    except WorkbenchError as exc:
        if needs_images:
            raise WorkbenchError(f"--quantize {options.quantize} needs the run's training and validation images: "
                                 f"{exc}") from None
        return synthetic_data(spec, f"the validation images cannot be used: {exc}")


def export_with_report(module: "nn.Module", spec: ModelSpec, fmt: str, out: str | Path, recipe_toml: str | None,
                       options: ExportOptions, data: ReportData, say: Say | None = None) -> ExportOutcome:
    """Write ``fmt`` (with the variant ``options`` ask for) to ``out`` and ``export_report.json`` beside it."""

    say = say or (lambda _text: None)
    options.check(fmt, spec)
    if options.quantize == "int8" and (data.calibration_float is None or not len(data.calibration_float)):
        raise WorkbenchError("--quantize int8 needs calibration images: none were prepared")
    out = Path(out).expanduser()
    exporter = registry().get(EXPORTERS, fmt)
    folder_kind = getattr(exporter, "output_kind", "file") == "folder"
    variant = makes_onnx_variants(exporter) and (options.lossy or options.with_preprocessing)
    report_path = (out if folder_kind else (out.parent if str(out.parent) else Path("."))) / REPORT_NAME
    if not folder_kind and out.name == REPORT_NAME:
        raise WorkbenchError(f"--out {out}: that name is kept for the export report; choose another file name")
    check_export_target(out, "folder" if folder_kind else "file")  # no device, FIFO or wrong kind is replaced
    check_report_target(report_path)
    model = copy.deepcopy(module).cpu().float().eval()
    say("running the PyTorch model on the validation inputs")
    torch_run = torch_runner(model)
    reference = logits_of(torch_run, data.val_float)
    rows = [compare("PyTorch (eager)", reference, reference, data.labels, False, [])]
    notes = list(data.notes)
    with scratch_folder(out, folder_kind) as scratch:
        staged = scratch / out.name
        say(f"writing {fmt}")
        result = export_model(module, spec, fmt, staged, recipe_toml, options.tolerance)
        if variant:
            _onnx_variant(staged, scratch, spec, options, data, reference, rows, notes, say, len(result.paths))
        else:
            say(f"running the {fmt} export on the validation inputs")
            loader = getattr(exporter, "load_for_report", None)  # how to run its own files, never the module
            runner = loader(result.paths, model) if callable(loader) else None
            rows.append(_measure(fmt, runner, data.val_float, reference, data, True, result.paths, options.timing))
        if any(row.latency_ms_b1 is not None for row in rows[1:]):  # a baseline for the formats that ran
            rows[0].latency_ms_b1, rows[0].throughput_b32 = time_runner(torch_run, data.val_float[:1], options.timing)
        report = ExportReport(fmt, options.variant(), data.description, len(data.val_float), data.synthetic, rows,
                              conditions(options.timing), notes, accepted_drop=options.accept_accuracy_drop)
        _gate(report, options)
        final = [_place(path, staged, out) for path in result.paths]
    for row in report.rows:
        if row.written:
            row.files = [str(p) for p in final]
    try:
        write_report(report, report_path)
    except WorkbenchError:
        for path in final:  # no export without its report
            path.unlink(missing_ok=True)
        raise
    message = result.message.replace(str(staged), str(out))
    if variant:
        message += f"; then made {options.variant()} (the parity figure is the fp32 graph's; the report has the rest)"
    return ExportOutcome(ExportResult(result.format, final, result.parity_max_abs_diff, message), report, report_path)


def _onnx_variant(staged: Path, scratch: Path, spec: ModelSpec, options: ExportOptions, data: ReportData,
                  reference: "np.ndarray", rows: list[FormatFigures], notes: list[str], say: Say, files: int) -> None:
    """Turn the staged fp32 file into the asked variant (in place), measuring fp32 as the reference."""
    from workbench import onnx_variants

    if files > 1:
        raise WorkbenchError("INT8, fp16 and --with-preprocessing are not supported for ONNX files over 2 GB "
                             "(weights in a separate .data file)")
    fp32 = scratch / "fp32.onnx"
    os.replace(staged, fp32)
    say("running fp32 ONNX on the validation inputs")
    rows.append(_measure("ONNX fp32", ort_runner(fp32), data.val_float, reference, data, False, [fp32],
                         options.timing))
    current = fp32
    name = "ONNX fp32"
    if options.quantize == "int8":
        assert data.calibration_float is not None
        say(f"calibrating and quantizing (INT8 static, {len(data.calibration_float)} images)")
        current = scratch / "int8.onnx"
        floats = onnx_variants.quantize_int8_static(fp32, current, data.calibration_float, options.calibration_method)
        name = "ONNX int8 (static QDQ)"
        notes.append(f"INT8 calibrated on {data.calibration_source}, {options.calibration_method} ranges")
        _say_float_ops(floats, notes)
    elif options.quantize == "int8-dynamic":
        say("quantizing (INT8 dynamic)")
        current = scratch / "int8-dynamic.onnx"
        floats = onnx_variants.quantize_int8_dynamic(fp32, current)
        name = "ONNX int8 (dynamic)"
        _say_float_ops(floats, notes)
    elif options.precision == "fp16":
        say("checking the fp16 range and converting")
        onnx_variants.check_fp16_range(fp32, data.val_float)
        current = scratch / "fp16.onnx"
        onnx_variants.convert_fp16(fp32, current, options.keep_io_float32)
        name = "ONNX fp16" + (" (float32 io)" if options.keep_io_float32 else "")
        notes.append("fp16 is meant for GPU targets: onnxruntime's CPU provider runs many fp16 ops through casts")
    inputs, input_kind = data.val_float, "float32 N×C×H×W, normalised"
    if options.with_preprocessing:
        if data.val_uint8 is None:
            raise WorkbenchError("--with-preprocessing is proven on the run's validation images; this model has "
                                 "none (" + data.description + ")")
        say("adding the preprocessing to the graph")
        pre = scratch / "preprocessing.onnx"
        onnx_variants.add_preprocessing(current, pre, spec)
        current, inputs, input_kind = pre, data.val_uint8, UINT8_INPUT
        name += " + preprocessing"
    say(f"running {name} on the validation inputs")
    row = _measure(name, ort_runner(current), inputs, reference, data, True, [current], options.timing, input_kind)
    rows.append(row)
    fp32_row = rows[-2]
    if row.latency_ms_b1 and fp32_row.latency_ms_b1 and row.latency_ms_b1 > fp32_row.latency_ms_b1:
        row.notes.append(f"slower than fp32 ONNX on this machine at batch 1: {row.latency_ms_b1:.3g} ms vs "
                         f"{fp32_row.latency_ms_b1:.3g} ms per image")
    if row.throughput_b32 and fp32_row.throughput_b32 and row.throughput_b32 < fp32_row.throughput_b32:
        row.notes.append(f"lower throughput than fp32 ONNX on this machine at batch 32: {row.throughput_b32:.3g} vs "
                         f"{fp32_row.throughput_b32:.3g} images/s")
    os.replace(current, staged)


def _say_float_ops(floats: dict[str, int], notes: list[str]) -> None:
    if floats:
        shown = ", ".join(f"{op} ×{n}" for op, n in floats.items())
        notes.append(f"ops that stayed float (the quantizer skips them; the rest is INT8): {shown}")


def _measure(name: str, runner: Runner | None, inputs: "np.ndarray", reference: "np.ndarray", data: ReportData,
             written: bool, files: list[Path], timing: Timing,
             input_kind: str = "float32 N×C×H×W, normalised") -> FormatFigures:

    if runner is None:
        row = compare(name, reference, reference, data.labels, written, files, input_kind)
        row.top1 = row.delta_points = None
        row.agreement, row.max_abs_logit_diff = float("nan"), float("nan")
        row.notes.append("not run back: this exporter gives no way to run its files")
        return row
    try:
        logits = logits_of(runner, inputs)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"the {name} export does not run on the validation inputs: "
                             f"{' '.join(str(exc).split())[:300]}; no file written") from None
    row = compare(name, logits, reference, data.labels, written, files, input_kind)
    row.latency_ms_b1, row.throughput_b32 = time_runner(runner, inputs[:1], timing)
    return row


def _gate(report: ExportReport, options: ExportOptions) -> None:
    """Refuse a lossy variant whose top-1 drops more than allowed (or cannot be checked), with the figures."""
    if not options.lossy:
        return
    row = report.rows[-1]
    if options.accept_accuracy_drop:
        report.notes.append("written with --accept-accuracy-drop: the accuracy check was not enforced")
        return
    what = "INT8" if options.quantize else "fp16"
    if report.synthetic or row.delta_points is None:
        raise ExportRefused(f"refusing the {what} export: there are no labelled validation images to check its "
                             f"accuracy ({report.data}); agreement with PyTorch {row.agreement:.1%}. Nothing written; "
                             "--accept-accuracy-drop writes it anyway", report)
    drop = -row.delta_points
    if drop > options.max_accuracy_drop:
        torch_row = report.rows[0]
        assert row.top1 is not None and torch_row.top1 is not None
        hint = (" Try --calibration-method entropy or percentile, or more (or more typical) training images with "
                "--calibration-images; or"
                if options.quantize == "int8" else "")
        raise ExportRefused(
            f"refusing the {what} export ({row.name}): top-1 {row.top1:.2%} on {report.inputs:,} validation images vs "
            f"{torch_row.top1:.2%} for PyTorch: it loses {drop:.2f} points, more than the {options.max_accuracy_drop:g} "
            f"allowed; agreement {row.agreement:.1%}, max |logit diff| "
            f"{row.max_abs_logit_diff:.3g}. Nothing written.{hint} --accept-accuracy-drop writes it anyway", report)


def _place(path: Path, staged: Path, out: Path) -> Path:
    """Move a staged file to its final place (through atomic_path, so the target checks apply)."""
    if path == staged:
        final = out
    elif path.is_relative_to(staged):  # a file in a staged folder (safetensors)
        final = out / path.relative_to(staged)
    else:  # beside the staged file (an ONNX file's .data)
        final = out.with_name(path.name)
    with atomic_path(final) as tmp:
        os.replace(path, tmp)
    return final


def makes_onnx_variants(exporter: object) -> bool:
    """Whether an exporter writes ONNX that the INT8/fp16/preprocessing variants can be made from."""
    return bool(getattr(exporter, "makes_onnx_variants", False))
