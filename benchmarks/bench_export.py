"""Exports of trained runs: formats × (accuracy, agreement, size, latency b1, throughput b32) on this CPU (issue 25).

    python benchmarks/bench_export.py --run demo=runs/demo-x --run resnet18=runs/r18 [--rounds 7] [--write-results]
    python benchmarks/bench_export.py --prepare /tmp/bench-export   # trains the two runs first (demo + resnet18)

Per run: fp32 ONNX, INT8 static (QDQ, per-channel, 200 calibration images), INT8 dynamic, fp16 (float32
io) and TorchScript are written through ``workbench.export_pipeline`` (accuracy, agreement, max |logit
diff| and size on the run's validation images come from its report). Timings are then taken again,
interleaved: every round runs each format once at batch 1 and once at batch 32, so load on the machine
hits all formats alike; medians over the rounds. For the INT8 file, onnxruntime's profiler splits
the batch-1 time by operator type: the measured reason when INT8 is not faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench_export:begin -->", "<!-- bench_export:end -->"
VARIANTS = [  # (label, format, options)
    ("ONNX fp32", "onnx", {}),
    ("ONNX int8 static QDQ", "onnx", {"quantize": "int8"}),
    ("ONNX int8 dynamic", "onnx", {"quantize": "int8-dynamic"}),
    ("ONNX fp16 (fp32 io)", "onnx", {"precision": "fp16", "keep_io_float32": True}),
    ("TorchScript", "torchscript", {}),
]
RESNET18_DIGITS = """
[model]
source = "timm"
name = "resnet18"
num_classes = 10
input_size = [3, 32, 32]
[data]
dataset = "digits"
val_split = 0.2
[train]
epochs = 3
batch_size = 64
lr = 0.003
optimizer = "adamw"
augment = false
"""


def prepare(folder: Path) -> list[tuple[str, Path]]:
    """Train the demo (EfficientNet-Lite0, ImageNet weights, 48 px digits) and resnet18 on the digits at 32 px."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "workbench.cli"]
    demo, r18 = folder / "demo", folder / "resnet18"
    if not (demo / "model.safetensors").is_file():
        subprocess.run([*exe, "demo", "--headless", "--out", str(demo)], check=True)
    if not (r18 / "model.safetensors").is_file():
        (folder / "resnet18.toml").write_text(RESNET18_DIGITS)
        subprocess.run([*exe, "train", str(folder / "resnet18.toml"), "--out", str(r18)], check=True)
    return [("EfficientNet-Lite0 demo (48 px)", demo), ("resnet18 digits (32 px)", r18)]


def export_all(label: str, run: Path, out: Path) -> list[dict]:
    from workbench.export_pipeline import ExportOptions, export_with_report, report_data
    from workbench.export_report import Timing
    from workbench.run_loading import load_run

    trained = load_run(run)
    rows = []
    data = report_data(trained.plan, trained.spec, ExportOptions(quantize="int8"))  # decoded once, for all variants
    for name, fmt, opts in VARIANTS:
        options = ExportOptions(**opts, timing=Timing(runs=1, warmup=0), accept_accuracy_drop=True)
        target = out / f"{name.split()[0].lower()}-{len(rows)}{'.pt' if fmt == 'torchscript' else '.onnx'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        outcome = export_with_report(trained.module, trained.spec, fmt, target, None, options, data)
        row = outcome.report.rows[-1]
        torch_row = outcome.report.rows[0]
        rows.append({"model": label, "format": name, "file": str(target), "top1": row.top1, "agreement": row.agreement,
                     "delta": row.delta_points, "diff": row.max_abs_logit_diff, "size": row.size_bytes,
                     "torch_top1": torch_row.top1, "inputs": outcome.report.inputs, "notes": outcome.report.notes,
                     "input_size": list(trained.spec.input_size)})
        print(f"{label}: {name}: top-1 {row.top1:.2%} (PyTorch {torch_row.top1:.2%}), agreement {row.agreement:.1%}, "
              f"{row.size_bytes / 2**20:.1f} MiB", flush=True)
    rows.insert(0, {"model": label, "format": "PyTorch eager", "file": None, "top1": rows[0]["torch_top1"],
                    "agreement": 1.0, "delta": 0.0, "diff": 0.0, "size": None, "inputs": rows[0]["inputs"],
                    "input_size": rows[0]["input_size"], "run": str(run)})
    return rows


def runners(rows: list[dict], run: Path):
    import numpy as np
    import onnxruntime as ort
    import torch

    from workbench.run_loading import load_run

    out = {}
    for row in rows:
        if row["file"] is None:
            module = load_run(run).module.eval()
            out[row["format"]] = lambda x, m=module: m(torch.from_numpy(x)).numpy()
        elif row["file"].endswith(".pt"):
            scripted = torch.jit.load(row["file"])
            out[row["format"]] = lambda x, m=scripted: m(torch.from_numpy(x)).numpy()
        else:
            session = ort.InferenceSession(row["file"], providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            out[row["format"]] = lambda x, s=session, n=name: s.run(None, {n: x.astype(np.float32)})[0]
    return out


def interleaved(rows: list[dict], run: Path, rounds: int, reps: int) -> None:
    import numpy as np
    import torch

    shape = rows[0]["input_size"]
    x1 = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    x32 = np.random.default_rng(1).standard_normal((32, *shape)).astype(np.float32)
    run_of = runners(rows, run)
    b1, b32 = defaultdict(list), defaultdict(list)
    with torch.inference_mode():
        for fn in run_of.values():  # warm-up
            fn(x1), fn(x32)
        for _ in range(rounds):
            for name, fn in run_of.items():
                start = time.perf_counter()
                for _ in range(reps):
                    fn(x1)
                b1[name].append((time.perf_counter() - start) / reps * 1000)
                start = time.perf_counter()
                fn(x32)
                b32[name].append(32 / (time.perf_counter() - start))
    for row in rows:
        row["b1_ms"] = statistics.median(b1[row["format"]])
        row["b32"] = statistics.median(b32[row["format"]])


def op_profile(path: str, shape: list[int], runs: int = 50) -> dict[str, float]:
    """Share of batch-1 kernel time per operator type (onnxruntime's profiler)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "prof")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        for _ in range(runs):
            session.run(None, {session.get_inputs()[0].name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values()) or 1.0
    return {op: us / total for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:6]}


def table(rows: list[dict]) -> str:
    lines = ["| model | format | top-1 | agreement | Δ points | max abs logit diff | size | latency b1 ms | "
             "b1 ÷ fp32 ONNX | throughput b32 img/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    fp32 = {r["model"]: r["b1_ms"] for r in rows if r["format"] == "ONNX fp32"}
    for r in rows:
        size = f"{r['size'] / 2**20:.1f} MiB" if r["size"] else "–"
        lines.append(f"| {r['model']} | {r['format']} | {r['top1']:.2%} | {r['agreement']:.1%} | {r['delta']:+.2f} | "
                     f"{r['diff']:.3g} | {size} | {r['b1_ms']:.2f} | {r['b1_ms'] / fp32[r['model']]:.2f} | "
                     f"{r['b32']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=RUN_DIR")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="train the demo and resnet18 runs into DIR first")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median reported)")
    parser.add_argument("--reps", type=int, default=10, help="batch-1 runs per round")
    parser.add_argument("--variants", default="", help="comma-separated labels' first words to keep (e.g. fp32,int8)")
    parser.add_argument("--write-results", action="store_true", help="put the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.variants:
        keep = [v.strip().lower() for v in args.variants.split(",")]
        VARIANTS[:] = [v for v in VARIANTS if any(v[0].lower().startswith("onnx " + k) or v[0].lower() == k for k in keep)]
    runs = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in args.run]
    if args.prepare:
        runs += prepare(args.prepare)
    if not runs:
        parser.error("give --run LABEL=RUN_DIR or --prepare DIR")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, run in runs:
            mine = export_all(label, run, Path(tmp) / label.split()[0])
            interleaved(mine, run, args.rounds, args.reps)
            int8 = next(r for r in mine if r["format"] == "ONNX int8 static QDQ")
            fp32 = next(r for r in mine if r["format"] == "ONNX fp32")
            profiles.append((label, op_profile(fp32["file"], fp32["input_size"]),
                             op_profile(int8["file"], int8["input_size"])))
            rows += mine
    import onnxruntime as ort
    import torch

    command = "python benchmarks/bench_export.py " + " ".join(sys.argv[1:])
    lines = [BEGIN, f"Command: `{command}` ({started}; load average at start {load:.1f}).", "",
             f"Machine: {os.cpu_count()} logical CPUs (AVX-512 VNNI, AVX-VNNI and AMX-INT8 in `lscpu`), torch "
             f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__} CPU provider. "
             f"Accuracy on each run's validation images ({rows[0]['inputs']} and {rows[-1]['inputs']}); timings: "
             f"{args.rounds} interleaved rounds (each: {args.reps} batch-1 runs and one batch of 32 per format), "
             "medians; random inputs of the model's size.", "", table(rows), "",
             "Batch-1 kernel time by operator type (onnxruntime profiler, 50 runs), top 6:", ""]
    for label, fp32_ops, int8_ops in profiles:
        show = lambda ops: ", ".join(f"{op} {share:.0%}" for op, share in ops.items())  # noqa: E731
        lines += [f"- {label}: fp32 — {show(fp32_ops)}; int8 — {show(int8_ops)}"]
    lines.append(END)
    block = "\n".join(lines)
    print(block)
    if args.write_results:
        results = ROOT / "benchmarks" / "RESULTS.md"
        text = results.read_text()
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text += "\n## 7. Exports: INT8, fp16, TorchScript against fp32 ONNX (issue 25)\n\n" + block + "\n"
        results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
