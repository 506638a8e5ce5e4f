"""`workbench train` against a competent plain loop, PyTorch Lightning and fastai on the same task.

    python benchmarks/bench_peers.py --quick        # 200 digits, 2 epochs, every strategy and tool (~15-20 min)
    python benchmarks/bench_peers.py                # all 1,797 digits, 3 epochs
    python benchmarks/bench_peers.py --strategies full --tools workbench,plain --reps 2

The task: timm resnet18, random init (seed 0), scikit-learn's handwritten digits at 64×64 (bicubic
resize + centre crop + ImageNet normalisation, exactly the workbench's eval transform), the
workbench's stratified 80/20 split, batch 32, AdamW (LR 1e-3, weight decay 0.01, constant LR),
no augmentation, frozen BatchNorm in eval mode for every tool. Strategies: linear probe, freeze all
but the last stage, full fine-tune, discriminative LRs (×1/2.6 per earlier group), gradual (the head,
then one stage more per epoch).

Each (strategy, tool) runs in its own process: the workbench through its command line
(``workbench train project.toml``), the others as scripts in ``benchmarks/peers/``, Lightning and
fastai in their own venvs under ``benchmarks/.venvs`` (created on first use; they see the project's
torch). Tools run one after another in an order rotated per strategy, so a change of machine load
hits all of them alike. Per run: start-up (process start → ready to train), time to the first
optimizer step, wall and CPU time of every epoch (training + validation; CPU of the process and its
loader workers), total wall and CPU (``wait4``), peak RSS (``ru_maxrss``) and validation accuracy.
Writes a Markdown table into ``benchmarks/RESULTS.md`` (between the bench_peers markers) with the
command that produced it. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

STRATEGIES = {  # bench name -> (workbench compare strategy, label)
    "probe": ("probe", "linear probe"),
    "freeze_last": ("freeze:3", "all but the last stage frozen"),
    "full": ("full", "full fine-tune"),
    "discriminative": ("discriminative", "discriminative LRs"),
    "gradual": ("gradual", "gradual unfreezing"),
}
TOOLS = ("workbench", "workbench-fp32", "plain", "plain-nchw", "plain-bf16", "lightning", "fastai")
EXTRA_TOOLS = ("workbench-api", "workbench-compile")  # the Trainer API in-process; `[train] compile = true`
PEERS = ("plain", "plain-nchw", "plain-bf16", "lightning", "fastai")
# The CLI on a copy of the project file with one [train] setting changed (the file's suffix).
WORKBENCH_VARIANTS = {"workbench": None, "workbench-compile": ("compile", True), "workbench-fp32": ("amp", "off")}
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_peers:begin -->", "<!-- bench_peers:end -->"
RATIOS_NOTE = ("Ratios: total CPU time over the competent plain loop's (`plain`, channels_last) and, for the "
               "workbench, over the best peer's (lowest median total CPU among plain, plain-nchw, plain-bf16, "
               "Lightning, fastai). Paired: in each repetition the tools run back to back, so the workbench's "
               "total CPU over each peer's in the same repetition cancels most of the host's drift; shown for "
               "the peer closest to the workbench: the median over repetitions (lowest–highest).")


# --- the task -------------------------------------------------------------------------------

def base_plan(epochs: int, data_path: Path | None) -> Any:
    from workbench.plan import DataConfig, FinetunePlan, FreezeConfig, ModelConfig, TrainConfig

    data = DataConfig(dataset="folder", path=str(data_path), val_split=0.2, seed=0) if data_path else \
        DataConfig(dataset="digits", val_split=0.2, seed=0)
    return FinetunePlan(
        model=ModelConfig(source="timm", name="resnet18", pretrained=False, num_classes=10, input_size=(3, 64, 64)),
        freeze=FreezeConfig(batchnorm="freeze"),
        data=data,
        train=TrainConfig(epochs=epochs, batch_size=32, optimizer="adamw", scheduler="constant", lr=1e-3,
                          weight_decay=0.01, augment=False, seed=0),
    )


def write_subset(folder: Path, per_class: int) -> Path:
    """The first ``per_class`` digits of each class as 8×8 PNGs in class folders (the workbench reads them)."""
    from PIL import Image

    from workbench_plugins.digits_dataset import digits_arrays

    pixels, labels = digits_arrays()
    counts = [0] * 10
    for i, label in enumerate(labels.tolist()):
        if counts[label] < per_class:
            (folder / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i]).save(folder / str(label) / f"{i:04d}.png")
            counts[label] += 1
    return folder


def export_data(plan: Any, out: Path) -> dict[str, Any]:
    """The workbench's own split, as raw uint8 pixels + labels + indices for the peers (an .npz)."""
    import numpy as np

    from workbench.data import build_transform, open_images
    from workbench.model_request import request_from_plan
    from workbench.sources import load_backbone

    images = open_images(plan.data, plan.base_dir)
    items = list(images.train) + list(images.val)
    pixels = np.stack([np.asarray(it.load()) for it in items])
    labels = np.array([it.label for it in items])
    np.savez(out, pixels=pixels, labels=labels, train=np.arange(len(images.train)),
             val=np.arange(len(images.train), len(items)))
    spec = load_backbone(request_from_plan(plan)).spec
    size = spec.input_size[1]
    resize = int(size / spec.crop_pct) if spec.crop_mode == "center" else size  # timm's scale_size rule
    info = {"data": str(out), "size": size, "resize": resize, "mean": list(spec.mean), "std": list(spec.std),
            "classes": len(images.classes), "train": len(images.train), "val": len(images.val)}
    # The peers' preprocessing must give the workbench's tensors exactly.
    from peers.common import preprocess

    tf = build_transform(spec, train=False, augment=False)
    theirs = preprocess(pixels[:16], size, resize, spec.mean, spec.std)
    ours = np.stack([tf(it.load()).numpy() for it in items[:16]])
    info["preprocess_max_abs_diff"] = float(np.abs(theirs.numpy() - ours).max())
    if info["preprocess_max_abs_diff"] > 1e-5:
        raise SystemExit(f"peers' preprocessing differs from the workbench's: {info['preprocess_max_abs_diff']}")
    return info


def write_project(plan: Any, strategy: str, path: Path) -> None:
    """The strategy's project file (as `workbench compare` builds it), and its variants' copies."""
    from dataclasses import replace

    from workbench.compare_plans import Strategy, _builtin, strategy_plan
    from workbench.project import save_project
    from workbench.workspace import Workspace

    ws = Workspace.from_plan(plan.copy())
    spec: Strategy = _builtin(STRATEGIES[strategy][0])
    planned = strategy_plan(ws.plan, ws.tree, spec)
    save_project(planned, path)
    for tool, change in WORKBENCH_VARIANTS.items():
        if change is not None:
            variant = planned.copy()
            variant.train = replace(planned.train, **{change[0]: change[1]})
            save_project(variant, _variant_path(path, tool))


def _variant_path(project: Path, tool: str) -> Path:
    return project if tool == "workbench" else project.with_name(f"{project.stem}-{tool.split('-', 1)[1]}.toml")


# --- running one tool -------------------------------------------------------------------------

@dataclass
class Run:
    tool: str
    strategy: str
    rep: int
    startup: tuple[float, float] = (float("nan"), float("nan"))  # (wall, cpu) process start -> ready
    first_step: float = float("nan")  # wall, process start -> first optimizer step done
    epochs: list[tuple[float, float, float]] = field(default_factory=list)  # (wall, cpu, val acc)
    total: tuple[float, float] = (float("nan"), float("nan"))
    peak_rss_mib: float = float("nan")
    error: str = ""


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (plus the reaped ones they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                pass
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, st in stats.items():
            if int(st[1]) == parent and child not in family:
                family.add(child)
                frontier.append(child)
    return sum(sum(int(x) for x in stats[p][11:15]) / tick for p in family if p in stats)


_EPOCH = re.compile(r"^epoch (\d+)/(\d+): .*val acc ([0-9.]+)%")


def run_tool(tool: str, strategy: str, rep: int, cmd: list[str], env: dict[str, str], log: Path) -> Run:
    run = Run(tool, strategy, rep)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    last = (start, 0.0)
    buffer = b""
    with open(log, "wb") as out:
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out.write(chunk)
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                event = _event(tool, line)
                if event is None:
                    continue
                t, cpu = time.perf_counter(), _tree_cpu(proc.pid)
                kind, acc = event
                if kind == "ready":
                    run.startup = (t - start, cpu)
                elif kind == "step1" and run.first_step != run.first_step:
                    run.first_step = t - start
                elif kind == "epoch":
                    run.epochs.append((t - last[0], cpu - last[1], acc))
                if kind in ("ready", "epoch"):
                    last = (t, cpu)
    _, status, usage = os.wait4(proc.pid, 0)
    run.total = (time.perf_counter() - start, usage.ru_utime + usage.ru_stime)
    run.peak_rss_mib = usage.ru_maxrss / 1024
    if status != 0:
        run.error = f"exit status {status >> 8}; see {log}"
    return run


def _event(tool: str, line: str) -> tuple[str, float] | None:
    if line.startswith("@@ "):
        _, name, payload = line.split(" ", 2)
        return name, float(json.loads(payload).get("val_acc", float("nan")))
    if tool not in WORKBENCH_VARIANTS:
        return None
    if line.startswith("training resnet18 on"):
        return "ready", float("nan")
    if re.search(r"\|\s*[01]/\d+ \[", line):  # tqdm: its bar appears with the first step report
        return "step1", float("nan")
    m = _EPOCH.match(line)
    if m:
        return "epoch", float(m.group(3)) / 100
    return None


def command(tool: str, strategy: str, data: dict[str, Any], project: Path, out: Path, epochs: int,
            pythons: dict[str, Path]) -> list[str]:
    if tool in WORKBENCH_VARIANTS:
        exe = Path(sys.executable).with_name("workbench")
        cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "workbench.cli"]
        return cli + ["train", str(_variant_path(project, tool)), "--out", str(out)]
    if tool == "workbench-api":
        return [sys.executable, str(HERE / "peers" / "workbench_api.py"),
                json.dumps({"project": str(project), "out": str(out)})]
    cfg = {**data, "strategy": strategy, "epochs": epochs, "seed": 0, "batch_size": 32, "lr": 1e-3,
           "weight_decay": 0.01, "channels_last": tool != "plain-nchw", "bf16": tool == "plain-bf16"}
    script = {"plain": "plain_loop.py", "plain-nchw": "plain_loop.py", "plain-bf16": "plain_loop.py",
              "lightning": "lightning_run.py",
              "fastai": "fastai_run.py"}[tool]
    python = pythons.get(tool, Path(sys.executable))
    return [str(python), str(HERE / "peers" / script), json.dumps(cfg)]


def amp_note() -> str:
    """What ``amp = "auto"`` means on this machine's CPU."""
    from workbench.training.devices import cpu_native_bf16

    native = cpu_native_bf16()
    return f"bfloat16 here: this CPU has {native}" if native else "float32 here: this CPU has no native bfloat16"


# --- report -------------------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def summarise(runs: list[Run]) -> dict[tuple[str, str], dict[str, float]]:
    """Medians over repetitions, per (strategy, tool)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key in sorted({(r.strategy, r.tool) for r in runs if not r.error}):
        rs = [r for r in runs if (r.strategy, r.tool) == key and not r.error]
        later = [e for r in rs for e in r.epochs[1:]]
        out[key] = {
            "startup_wall": _median([r.startup[0] for r in rs]), "startup_cpu": _median([r.startup[1] for r in rs]),
            "first_step": _median([r.first_step for r in rs]),
            "e1_wall": _median([r.epochs[0][0] for r in rs if r.epochs]),
            "e1_cpu": _median([r.epochs[0][1] for r in rs if r.epochs]),
            "later_wall": _median([e[0] for e in later]), "later_cpu": _median([e[1] for e in later]),
            "total_wall": _median([r.total[0] for r in rs]), "total_cpu": _median([r.total[1] for r in rs]),
            "rss": _median([r.peak_rss_mib for r in rs]),
            "acc": _median([r.epochs[-1][2] for r in rs if r.epochs]),
        }
    return out


def paired(runs: list[Run], strategy: str, tool: str) -> tuple[float, str, float, float] | None:
    """Total CPU over the closest peer's, paired by repetition (tools of one repetition run back to back, so a
    drift of the host's speed hits both): (median of the per-repetition ratios, that peer, lowest, highest).
    The closest peer is the one with the highest median ratio."""
    totals = {(r.tool, r.rep): r.total[1] for r in runs if r.strategy == strategy and not r.error}
    found = []
    for peer in PEERS:
        ratios = [totals[(tool, rep)] / totals[(peer, rep)] for (name, rep) in totals
                  if name == tool and (peer, rep) in totals]
        if ratios:
            found.append((statistics.median(ratios), peer, min(ratios), max(ratios)))
    return max(found) if found else None


def table(summary: dict[tuple[str, str], dict[str, float]], strategies: list[str], tools: list[str],
          runs: list[Run]) -> str:
    head = ("| strategy | tool | start-up s wall / CPU | first step s | epoch 1 s wall / CPU | later epochs s "
            "wall / CPU | total s wall / CPU | peak RSS MiB | val acc | later-epoch CPU ÷ competent loop | "
            "total CPU ÷ competent loop | total CPU ÷ best peer | paired: total CPU ÷ closest peer (range) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for strategy in strategies:
        plain = summary.get((strategy, "plain"))
        peers = [summary[(strategy, t)]["total_cpu"] for t in PEERS if (strategy, t) in summary]
        best = min(peers) if peers else float("nan")
        for tool in tools:
            s = summary.get((strategy, tool))
            if s is None:
                lines.append(f"| {STRATEGIES[strategy][1]} | {tool} | no result |" + " |" * 10)
                continue
            pair = paired(runs, strategy, tool) if tool.startswith("workbench") else None
            pair_text = f"{pair[0]:.2f} {pair[1]} ({pair[2]:.2f}–{pair[3]:.2f})" if pair else "–"
            ratio = s["total_cpu"] / plain["total_cpu"] if plain else float("nan")
            per_epoch = s["later_cpu"] / plain["later_cpu"] if plain else float("nan")
            vs_best = s["total_cpu"] / best if tool.startswith("workbench") else float("nan")
            name = f"**{tool}**" if tool.startswith("workbench") else tool
            lines.append(
                f"| {STRATEGIES[strategy][1]} | {name} | {s['startup_wall']:.1f} / {s['startup_cpu']:.1f} | "
                f"{s['first_step']:.1f} | {s['e1_wall']:.1f} / {s['e1_cpu']:.1f} | "
                f"{s['later_wall']:.2f} / {s['later_cpu']:.2f} | {s['total_wall']:.1f} / {s['total_cpu']:.1f} | "
                f"{s['rss']:,.0f} | {s['acc']:.1%} | {per_epoch:.2f} | {ratio:.2f} | "
                + (f"{vs_best:.2f} |" if vs_best == vs_best else "– |") + f" {pair_text} |")
    return "\n".join(lines)


_RUN_LINE = re.compile(r"^(\S+)\s+(\S+)\s+start-up\s+([\d.na]+)/\s*([\d.na]+)s\s+first step\s+([\d.na]+)s\s+"
                       r"epochs \(wall/CPU\) (.*?)\s+total\s+([\d.]+)/\s*([\d.]+)s\s+RSS ([\d,]+) MiB\s+val\s+([\d.na]+)%")


def runs_from_log(path: Path) -> tuple[list[Run], list[str]]:
    """The runs a previous invocation printed (one line per run), and its '#' header lines."""
    runs, header = [], []
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            header.append(line[2:])
        m = _RUN_LINE.match(line)
        if not m:
            continue
        strategy, tool = m.group(1), m.group(2)
        epochs = [tuple(float(v) for v in e.rstrip("s").split("/")) for e in m.group(6).split()]
        acc = float(m.group(10)) / 100
        rep = sum(1 for r in runs if (r.strategy, r.tool) == (strategy, tool))  # runs are printed in repetition order
        run = Run(tool, strategy, rep, (float(m.group(3)), float(m.group(4))), float(m.group(5)),
                  [(w, c, acc) for w, c in epochs], (float(m.group(7)), float(m.group(8))),
                  float(m.group(9).replace(",", "")))
        runs.append(run)
    return runs, header


def machine(pythons: dict[str, Path]) -> str:
    import torch
    from peer_venvs import versions

    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    peers = "; ".join(f"{name}: {versions(py, [name])}" for name, py in pythons.items() if name in ("lightning", "fastai"))
    return (f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}; {peers}; load average at start "
            f"{os.getloadavg()[0]:.1f}; GPU: none (GPU figures are unmeasured)")


def write_results(markdown: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    block = f"{BEGIN}\n{markdown}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images (20 per class), 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default 3 (quick: 2)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all 1,797 digits)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"any of {', '.join(TOOLS + EXTRA_TOOLS)} (default: {', '.join(TOOLS)})")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every run (medians are reported)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--keep", type=Path, default=None, help="keep run folders and logs here")
    parser.add_argument("--from-log", type=Path, nargs="+", default=None,
                        help="rebuild the table from the lines earlier runs printed (e.g. one cut short)")
    args = parser.parse_args()
    if args.from_log:
        runs, commands, machines = [], [], []
        for log in args.from_log:
            found, header = runs_from_log(log)
            runs += found
            commands.append(f"`{header[1].split(':')[0]}`" if len(header) > 1 else f"`{log}`")
            machines.append(header[0] if header else "?")
        strategies = [s for s in STRATEGIES if any(r.strategy == s and r.tool.startswith("workbench") for r in runs)]
        tools = [t for t in TOOLS + EXTRA_TOOLS if any(r.tool == t for r in runs)]
        names = " ".join(log.name for log in args.from_log)
        task = header[1].split(": ", 1)[1] if len(header) > 1 and ": " in header[1] else "?"
        markdown = "\n".join([f"Rebuilt with `python benchmarks/bench_peers.py --from-log {names}` from the per-run "
                              f"lines of: {'; '.join(commands)}.", "",
                              f"Machine: {machines[0]}.", "",
                              f"Task: {task}. Medians over repetitions. {RATIOS_NOTE}", "",
                              table(summarise(runs), strategies, tools, runs)])
        print(markdown)
        if not args.no_write:
            write_results(markdown)
        return 0
    epochs = args.epochs or (2 if args.quick else 3)
    per_class = args.per_class or (20 if args.quick else None)
    strategies = [s for s in args.strategies.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    for name in strategies:
        if name not in STRATEGIES:
            parser.error(f"unknown strategy {name!r} ({', '.join(STRATEGIES)})")
    for name in tools:
        if name not in TOOLS + EXTRA_TOOLS:
            parser.error(f"unknown tool {name!r} ({', '.join(TOOLS + EXTRA_TOOLS)})")

    from peer_venvs import peer_python

    pythons = {t: peer_python(t, log=lambda m: print(m, flush=True)) for t in ("lightning", "fastai") if t in tools}
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-peers-"))
    root.mkdir(parents=True, exist_ok=True)
    data_path = write_subset(root / "images", per_class) if per_class else None
    plan = base_plan(epochs, data_path)
    data = export_data(plan, root / "data.npz")
    for strategy in strategies:
        write_project(plan, strategy, root / f"{strategy}.toml")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WORKBENCH_CACHE_DIR": str(root / "cache")}
    cmdline = "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:])
    print(f"# {machine(pythons)}")
    print(f"# {cmdline}: resnet18 random init, digits {data['train']} train / {data['val']} val at "
          f"{data['size']}×{data['size']}, {epochs} epochs, batch 32, AdamW 1e-3, no augmentation "
          f"(peers' preprocessing = the workbench's eval transform, max |diff| {data['preprocess_max_abs_diff']:.1e})",
          flush=True)
    runs: list[Run] = []
    started = time.perf_counter()
    for rep in range(args.reps):
        for k, strategy in enumerate(strategies):
            shift = (k + rep) % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                out = root / "runs" / f"{strategy}-{tool}-{rep}"
                if out.exists():
                    shutil.rmtree(out)
                cmd = command(tool, strategy, data, root / f"{strategy}.toml", out, epochs, pythons)
                out.parent.mkdir(parents=True, exist_ok=True)
                run = run_tool(tool, strategy, rep, cmd, env, root / "runs" / f"{strategy}-{tool}-{rep}.log")
                runs.append(run)
                epochs_txt = " ".join(f"{w:.2f}/{c:.2f}s" for w, c, _ in run.epochs)
                print(f"{strategy:<15} {tool:<11} start-up {run.startup[0]:5.1f}/{run.startup[1]:5.1f}s  "
                      f"first step {run.first_step:5.1f}s  epochs (wall/CPU) {epochs_txt}  total "
                      f"{run.total[0]:6.1f}/{run.total[1]:6.1f}s  RSS {run.peak_rss_mib:,.0f} MiB  "
                      f"val {run.epochs[-1][2] if run.epochs else float('nan'):.1%} {run.error}", flush=True)
    summary = summarise(runs)
    markdown = "\n".join([
        f"Command: `{cmdline}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.perf_counter() - started:.0f} s).",
        "",
        f"Machine: {machine(pythons)}.",
        "",
        f"Task: resnet18 (timm, random init, seed 0), digits {data['train']} train / {data['val']} val at "
        f"{data['size']}×{data['size']}, {epochs} epochs, batch 32, AdamW (LR 1e-3, wd 0.01, constant), no "
        "augmentation, frozen BatchNorm in eval mode. `workbench` runs its default `amp = \"auto\"` "
        f"({amp_note()}); `workbench-fp32` the same project with `amp = \"off\"`; `plain-bf16` is the "
        "competent loop under `torch.autocast(\"cpu\", torch.bfloat16)`. Times in seconds; CPU = user + system of the process and "
        "its loader workers; epochs include validation; medians over "
        f"{args.reps} repetition(s). {RATIOS_NOTE}",
        "",
        table(summary, strategies, tools, runs),
    ])
    print()
    print(markdown)
    if not args.no_write:
        write_results(markdown)
        print(f"\nwritten to {RESULTS}")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
