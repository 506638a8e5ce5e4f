"""``workbench export``: a run's weights in one format (and its INT8/fp16/preprocessing variant), with a report
that proves the export on the run's validation images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.common import int_at_least


def add_parser(sub: argparse._SubParsersAction) -> None:
    from workbench.export_data import DEFAULT_CALIBRATION_IMAGES
    from workbench.export_pipeline import DEFAULT_MAX_DROP_POINTS, PRECISIONS, QUANTIZE_CHOICES
    from workbench.onnx_variants import CALIBRATION_METHODS

    exporters = _exporters()
    p = sub.add_parser("export", help="export a run's final weights, proven on its validation images",
                       formatter_class=argparse.RawTextHelpFormatter,
                       description="Writes the format, then export_report.json beside it: top-1, agreement with "
                                   "PyTorch, max |logit diff|, size,\nlatency (batch 1) and throughput (batch 32) "
                                   "of each format on the run's validation images.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=sorted(exporters), metavar="FORMAT",
                   help="one of the installed exporter plugins:\n" + "\n".join(
                       f"  {name}: {desc}" for name, desc in sorted(exporters.items())))
    p.add_argument("--out", type=Path, required=True, help="a folder for safetensors, a file for the others")
    p.add_argument("--adapters-only", action="store_true",
                   help="a run with [adapters]: write only the adapter, in peft's format (adapter_model.safetensors\n"
                        "+ adapter_config.json in the --out folder); without it, exports merge LoRA into the weights")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES,
                   help="ONNX only: int8 = static QDQ, per-channel weights, calibrated on training images;\n"
                        "int8-dynamic = int8 MatMul/Gemm weights, activations quantized at run time")
    p.add_argument("--calibration-images", type=int_at_least(1), metavar="N",
                   help=f"with --quantize int8: training images to calibrate on (default: up to "
                        f"{DEFAULT_CALIBRATION_IMAGES})")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                   help="with --quantize int8: how activation ranges are set (default minmax; entropy and\n"
                        "percentile clip rare outliers)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="ONNX only: fp16 weights and compute, for GPU targets (default fp32)")
    p.add_argument("--keep-io-float32", action="store_true", help="with --precision fp16: float32 inputs/outputs")
    p.add_argument("--with-preprocessing", action="store_true",
                   help="ONNX only: the file takes uint8 N×H×W×C images (0-255) and does the layout change,\n"
                        "scaling and mean/std inside (resize/crop stay outside; the metadata says so)")
    p.add_argument("--max-accuracy-drop", type=float, default=DEFAULT_MAX_DROP_POINTS, metavar="POINTS",
                   help=f"largest top-1 loss of an INT8/fp16 export, in points (default {DEFAULT_MAX_DROP_POINTS:g})")
    p.add_argument("--accept-accuracy-drop", action="store_true",
                   help="write an INT8/fp16 export even when it loses more than --max-accuracy-drop")
    p.add_argument("--timing-runs", type=int_at_least(1), default=5, metavar="N",
                   help="timed runs per latency/throughput figure; the median is reported (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from workbench.export_pipeline import ExportOptions, export_with_report, report_data
    from workbench.export_report import Timing, format_text
    from workbench.run_catalog import read_run
    from workbench.run_loading import load_run

    options = ExportOptions(quantize=args.quantize, precision=args.precision, keep_io_float32=args.keep_io_float32,
                            with_preprocessing=args.with_preprocessing, calibration_images=args.calibration_images,
                            calibration_method=args.calibration_method,
                            max_accuracy_drop=args.max_accuracy_drop, accept_accuracy_drop=args.accept_accuracy_drop,
                            timing=Timing(runs=args.timing_runs))
    from workbench.errors import WorkbenchError

    if bool(args.format) == args.adapters_only:
        raise WorkbenchError("give --format FORMAT, or --adapters-only (the adapter alone, in peft's format)")
    trained = load_run(args.run_dir)
    print(f"weights: {read_run(args.run_dir).weights_label()}", file=sys.stderr if args.json else sys.stdout)
    if args.adapters_only:
        return _export_adapters(trained, args.run_dir, args.out)
    options.check(args.format, trained.spec)
    from workbench.adapters import has_adapters
    from workbench.run_start import check_bases_unchanged

    if has_adapters(trained.module):
        check_bases_unchanged(trained.module, args.run_dir)
    data = report_data(trained.plan, trained.spec, options)
    outcome = export_with_report(trained.module, trained.spec, args.format, args.out, trained.recipe_toml,
                                 options, data)
    result = outcome.result
    if args.json:
        print(json.dumps(outcome.report.to_json(), indent=2))
        return 0
    print(result.message)
    if result.parity_max_abs_diff is not None:
        print(f"max abs difference vs PyTorch: {result.parity_max_abs_diff:.3g}")
    for path in result.paths:
        print(f"wrote {path}")
    print(format_text(outcome.report))
    print(f"wrote {outcome.report_path}")
    return 0


def _export_adapters(trained, run_dir: Path, out: Path) -> int:
    from workbench.adapters import adapted_paths, save_adapters
    from workbench.errors import WorkbenchError

    if trained.plan.adapters is None:
        raise WorkbenchError(f"{run_dir} was trained without [adapters]: there is no adapter to export")
    paths = adapted_paths(trained.module)
    for path in save_adapters(trained.module, trained.plan.adapters, paths, out, trained.spec.architecture):
        print(f"wrote {path}")
    return 0


def _exporters() -> dict[str, str]:
    """Installed exporter plugins: name -> 'description (writes a file|folder)'."""
    from workbench.plugins import EXPORTERS, registry

    return {name: f"{getattr(e, 'description', '')} (writes a {getattr(e, 'output_kind', 'file')})"
            for name, e in registry().plugins(EXPORTERS).items()}
