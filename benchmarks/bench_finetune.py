"""Workbench Trainer vs the plain PyTorch loop a user writes by hand, side by side in one process.

    python benchmarks/bench_finetune.py                  # resnet18, mobilenetv3_small_100, vit_tiny (+ resnet50 on CUDA)
    python benchmarks/bench_finetune.py --quick          # one model, one timed step: a smoke run
    python benchmarks/bench_finetune.py --models resnet18 --steps 5

Batch 32, 224x224, 10 classes, synthetic-but-fixed images in a TensorDataset (the same
tensors for both sides), ``num_workers=0`` on both sides so the comparison is about compute.
The baseline ("plain") is a *competent* hand-written loop: ``requires_grad=False`` on frozen
parameters, an optimizer over the trainable ones only, frozen BatchNorm in eval mode, channels_last
for conv nets (on CPU too). Scenarios 1, 2 and 5 also step a *naive* loop (frozen BatchNorm left in
train mode, NCHW on CPU), labelled "naive"; every ratio in the targets table is against the
competent loop. Scenarios (each model):

1. full fine-tune (AdamW, every parameter trains);
2. ~80% frozen: stem and every stage but the last frozen (``freeze_first_stages(n - 1)``);
3. the same ~80% frozen with augmentation off, so the workbench caches the frozen trunk's
   output (whole epochs over a fixed 8-batch set; epoch 1 includes building the cache);
4. linear probe, workbench with the cache. Also a plain eval-mode forward pass under
   ``inference_mode``;
5. discriminative LRs (``discriminative(groups, 1e-3, 1/2.6)``, full fine-tune) vs a plain
   loop with the same parameter groups;
6. peak memory, each (scenario, side) in a fresh subprocess: the VmHWM (peak RSS) rise over
   the RSS after model and data creation (CPU), ``torch.cuda.max_memory_allocated`` (CUDA);

plus inspect-time speed on two 1,000+ module models (tree build, forward pass, one re-resolve
after a tick). Steps of the sides alternate in a rotating order so machine noise hits all;
ratios are computed within one run. Prints figures and a MET / NOT MET table; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from workbench.backbone import LoadRequest  # noqa: E402
from workbench.freezing import freeze_first_stages, linear_probe, set_frozen  # noqa: E402
from workbench.groups import discriminative  # noqa: E402
from workbench.plan import FinetunePlan, TrainConfig  # noqa: E402
from workbench.sources import load_backbone  # noqa: E402
from workbench.training.reports import EpochReport, StateReport, StepReport  # noqa: E402
from workbench.training.trainer import Trainer  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402

BATCH = 32
CLASSES = 10
SIZE = (3, 224, 224)
CPU_MODELS = ["resnet18", "mobilenetv3_small_100", "vit_tiny_patch16_224"]
CUDA_EXTRA = ["resnet50"]
SCENARIOS = ("full", "frozen80", "disc", "cached80", "probe", "memory")
INSPECT_MODELS = ["vit_base_patch16_224", "convnext_base"]
TOLERANCE = 1.05  # "no slower" / "about the same" allow 5% of noise, like the full fine-tune target
SCRATCH = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
os.environ.setdefault("WORKBENCH_CACHE_DIR", str(SCRATCH / "cache"))


def now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def device() -> torch.device:
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def synthetic(n: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, *SIZE, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def bundle(dataset: TensorDataset, tag: str) -> SimpleNamespace:
    return SimpleNamespace(train=dataset, val=None, classes=[f"class{i}" for i in range(CLASSES)],
                           fingerprint=f"bench-synthetic-{tag}-{len(dataset)}")


# --- the two sides ------------------------------------------------------------------------

def make_workspace(name: str, scenario: str, epochs: int, augment: bool) -> Workspace:
    torch.manual_seed(0)  # identical initial weights in every scenario
    backbone = load_backbone(LoadRequest(name, num_classes=CLASSES, input_size=SIZE))
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, optimizer="adamw", scheduler="constant", lr=1e-3,
                      weight_decay=0.01, device=str(device()), amp="auto", augment=augment,
                      cache_features="auto", num_workers=0, seed=0)
    ws = Workspace.from_backbone(backbone, FinetunePlan(train=cfg))
    if scenario in ("frozen80", "cached80"):
        body = [s for s in ws.tree.stages if s[0] != "head"]
        freeze_first_stages(ws.plan, ws.tree, len(body) - 2)  # all stages after the stem but the last
    elif scenario == "probe":
        linear_probe(ws.plan, ws.tree)
    elif scenario == "disc":
        ws.plan.groups = discriminative(ws.default_groups(), 1e-3, 1 / 2.6)
    return ws


class Plain:
    """A hand-written loop: same parameters frozen, same groups, AdamW, CE loss.

    ``competent=True`` (the baseline every ratio uses): frozen BatchNorm in eval mode, channels_last
    for conv nets on CPU too, optimizer over trainable parameters only. ``competent=False`` is the
    *naive* loop people write first: frozen BatchNorm left in train mode (a different function: its
    statistics keep moving) and NCHW on CPU; it is reported alongside, labelled.
    """

    def __init__(self, ws: Workspace, dataset: TensorDataset, competent: bool, grouped: bool) -> None:
        self.dev = device()
        self.model = copy.deepcopy(ws.backbone.module)  # same initial weights as the workbench side
        res = ws.resolve()
        trainable = {p.name for p in ws.tree.params if res.param_trainable[p.index]}
        named = dict(self.model.named_parameters())
        for n, p in named.items():
            p.requires_grad_(n in trainable)
        if grouped:
            groups = [{"params": [named[ws.tree.params[i].name] for i in g.params], "lr": g.lr,
                       "weight_decay": g.weight_decay} for g in res.groups if g.params]
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        self.groups = groups
        self.bn_eval = competent
        self.amp = torch.bfloat16 if self.dev.type == "cuda" and torch.cuda.is_bf16_supported() else (
            torch.float16 if self.dev.type == "cuda" else None)
        self.channels_last = (competent or self.dev.type == "cuda") and any(
            isinstance(m, nn.Conv2d) for m in self.model.modules())
        self.model.to(self.dev)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0,
                                 pin_memory=self.dev.type == "cuda", generator=torch.Generator().manual_seed(0))
        self.optimizer: torch.optim.Optimizer | None = None

    def set_mode(self) -> None:
        self.model.train()
        if self.bn_eval:  # frozen BN (here: every BN whose parameters are frozen) in eval mode
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                        p.requires_grad for p in m.parameters()):
                    m.eval()

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.dev, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def train(self, epochs: int = 1_000_000) -> Iterator[float]:
        """Yields the loss after every optimizer step."""
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(self.groups, lr=1e-3, weight_decay=0.01)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        for _ in range(epochs):
            self.set_mode()
            for images, labels in self.loader:
                images, labels = self._images(images), labels.to(self.dev, non_blocking=True)
                with torch.autocast(self.dev.type, dtype=self.amp, enabled=self.amp is not None):
                    loss = F.cross_entropy(self.model(images).float(), labels)
                scaler.scale(loss).backward()
                scaler.step(self.optimizer)
                scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                yield loss.item()

    def eval_pass(self) -> float:
        """Seconds for one eval-mode forward pass over the data under inference_mode."""
        self.model.eval()
        start = now()
        with torch.inference_mode(), torch.autocast(self.dev.type, dtype=self.amp, enabled=self.amp is not None):
            for images, _ in DataLoader(self.loader.dataset, batch_size=BATCH, shuffle=False, num_workers=0,
                                        pin_memory=self.dev.type == "cuda"):
                self.model(self._images(images))
        return now() - start


class Wb:
    """The workbench Trainer, driven report by report."""

    def __init__(self, ws: Workspace, dataset: TensorDataset, tag: str) -> None:
        self.ws = ws
        self.trainer = Trainer(ws, bundle(dataset, tag), SCRATCH / "runs" / f"{tag}-{time.monotonic_ns()}")
        self.gen = self.trainer.run()
        self.states: list[StateReport] = []
        self.epochs: list[EpochReport] = []

    def until(self, kind: type) -> Any:
        for report in self.gen:
            if isinstance(report, StateReport):
                self.states.append(report)
            elif isinstance(report, EpochReport):
                self.epochs.append(report)
            if isinstance(report, kind):
                return report
        return None

    def close(self) -> None:
        self.gen.close()

    def cache_notes(self) -> list[str]:
        return [s.message for s in self.states if s.kind == "cache"]

    def cache_used(self) -> bool:
        """The Trainer said it split off and cached a frozen trunk (it fills the cache during epoch 1)."""
        return any(s.kind == "cache" and s.message.startswith("caching the frozen trunk") for s in self.states)


# --- scenarios --------------------------------------------------------------------------

def interleaved_steps(name: str, scenario: str, warmup: int, steps: int) -> dict[str, Any]:
    """Per-step seconds for both sides, alternating which side steps first."""
    augment = True  # realistic default; also keeps the feature cache out of scenarios 1, 2, 5
    data = synthetic((warmup + steps) * BATCH + BATCH)  # one spare batch: no epoch end is ever timed
    ws = make_workspace(name, scenario, epochs=1, augment=augment)
    plain = Plain(ws, data, competent=True, grouped=scenario == "disc")
    naive = Plain(ws, data, competent=False, grouped=scenario == "disc")
    wb = Wb(ws, data, f"{name}-{scenario}")
    plain_gen, naive_gen = plain.train(), naive.train()
    sides: dict[str, Callable[[], Any]] = {"plain": lambda: next(plain_gen), "naive": lambda: next(naive_gen),
                                           "workbench": lambda w=wb: w.until(StepReport)}
    times: dict[str, list[float]] = {"plain": [], "naive": [], "workbench": []}
    names = list(sides)
    for rep in range(warmup + steps):
        order = names[rep % 3:] + names[:rep % 3]
        for side in order:
            start = now()
            sides[side]()
            elapsed = now() - start
            if rep >= warmup:
                times[side].append(elapsed)
    wb.close()
    res = ws.resolve()
    frozen = sum(p.numel for p in ws.tree.params if not res.param_trainable[p.index]) / sum(
        p.numel for p in ws.tree.params)
    out = {side: statistics.median(t) for side, t in times.items()}
    out["raw"] = times
    # Each timed repetition's two steps ran back to back, so their ratio sees the same machine load.
    out["paired"] = statistics.median(w / p for w, p in zip(times["workbench"], times["plain"]))
    out["paired_naive"] = statistics.median(w / p for w, p in zip(times["workbench"], times["naive"]))
    out["frozen_fraction"] = frozen
    out["cache"] = wb.cache_notes()
    del plain, naive, wb, ws
    gc.collect()
    return out


def cached_epochs(name: str, scenario: str, batches: int, wb_epochs: int, plain_epochs: int) -> dict[str, Any]:
    """Scenarios 3 (``cached80``) and 4 (``probe``): whole epochs over a fixed ``batches``-batch set."""
    data = synthetic(batches * BATCH, seed=1)
    ws = make_workspace(name, scenario, epochs=wb_epochs, augment=False)
    plain = Plain(ws, data, competent=True, grouped=False)
    wb = Wb(ws, data, f"{name}-{scenario}")
    plain_gen = plain.train()
    out: dict[str, Any] = {"plain_epochs": [], "wb_epochs_wall": [], "wb_epoch_reported": [], "eval_pass": []}
    next(plain_gen)  # plain warm-up step (first-call allocations, optimizer state)
    for _ in range(batches - 1):  # finish the warm-up epoch so timed plain epochs start at an epoch boundary
        next(plain_gen)
    if scenario == "probe":
        out["eval_pass"].append(plain.eval_pass())
    start = now()
    epoch1 = wb.until(EpochReport)  # trace + split + epoch 1 (trunk once per image, filling the cache) + checkpoint
    out["wb_epoch1_wall"] = now() - start
    out["wb_epoch1_reported"] = epoch1.seconds if epoch1 else float("nan")
    for i in range(plain_epochs):
        start = now()
        for _ in range(batches):
            next(plain_gen)
        out["plain_epochs"].append(now() - start)
        if i == 0:  # epochs 2+ of the workbench between the plain epochs
            for _ in range(wb_epochs - 1):
                start = now()
                report = wb.until(EpochReport)
                out["wb_epochs_wall"].append(now() - start)
                out["wb_epoch_reported"].append(report.seconds if report else float("nan"))
            if scenario == "probe":
                out["eval_pass"].append(plain.eval_pass())
    wb.close()
    out["cache"] = wb.cache_notes()
    out["cached"] = wb.cache_used()
    out["plain_epoch"] = statistics.median(out["plain_epochs"])
    out["wb_epoch2"] = statistics.median(out["wb_epochs_wall"]) if out["wb_epochs_wall"] else float("nan")
    out["eval"] = statistics.median(out["eval_pass"]) if out["eval_pass"] else None
    del plain, wb, ws
    gc.collect()
    return out


# --- peak memory, in a fresh process per (scenario, side) ---------------------------------

def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name: str, scenario: str, side: str, steps: int) -> dict[str, Any]:
    """Peak training memory of ``steps`` optimizer steps over the baseline after model + data creation."""
    import resource

    data = synthetic((steps + 1) * BATCH)
    ws = make_workspace(name, scenario, epochs=1, augment=True)
    dev = device()
    if side == "plain":
        plain = Plain(ws, data, competent=True, grouped=scenario == "disc")
        step: Callable[[], Any] = iter(plain.train()).__next__
    else:
        ws.backbone.module.to(dev)
        wb = Wb(ws, data, f"mem-{name}-{scenario}")
        step = lambda: wb.until(StepReport)  # noqa: E731
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return {"base": base, "peak": torch.cuda.max_memory_allocated(), "method": "cuda.max_memory_allocated"}
    base = _rss_kib("VmRSS")
    try:  # reset the peak-RSS high-water mark to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM after clear_refs"
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss"
    for _ in range(steps):
        step()
    peak = _rss_kib("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"base": base * 1024, "peak": peak * 1024, "method": method}


def measure_memory(name: str, scenario: str, side: str, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_memory", name, scenario, side, str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not line:
        raise RuntimeError(f"memory subprocess failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return json.loads(line[-1])


# --- inspect-time speed -------------------------------------------------------------------

def inspect_speed(name: str, ticks: int) -> dict[str, Any]:
    torch.manual_seed(0)
    start = time.perf_counter()
    backbone = load_backbone(LoadRequest(name))
    load = time.perf_counter() - start
    start = time.perf_counter()
    ws = Workspace.from_backbone(backbone)
    from_backbone = time.perf_counter() - start
    start = time.perf_counter()
    ws.resolve()
    first_resolve = time.perf_counter() - start
    # A mid-model block with parameters at depth 2 (blocks.5, stages.2.blocks.3, ...).
    candidates = [n for n in ws.tree.nodes if n.depth == 2 and n.param_count]
    node = candidates[len(candidates) // 2]
    tick_times, resolve_times = [], []
    for i in range(ticks):
        start = time.perf_counter()
        set_frozen(ws.plan, ws.tree, node.path, i % 2 == 0)
        mid = time.perf_counter()
        ws.resolve()
        end = time.perf_counter()
        tick_times.append(end - start)
        resolve_times.append(end - mid)
    out = {"modules": len(ws.tree.nodes), "params": ws.tree.total_params, "load": load,
           "from_backbone": from_backbone, "build": ws.tree.build_seconds, "forward": ws.tree.forward_seconds,
           "first_resolve": first_resolve, "tick_path": node.path, "resolve": statistics.median(resolve_times),
           "tick": statistics.median(tick_times), "tick_max": max(tick_times)}
    del ws, backbone
    gc.collect()
    return out


def cli_inspect_wall(name: str) -> float:
    exe = Path(sys.executable).with_name("workbench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "workbench.cli"]
    start = time.perf_counter()
    subprocess.run(cmd + ["inspect", name], capture_output=True, text=True, check=True)
    return time.perf_counter() - start


# --- report -------------------------------------------------------------------------------

def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import timm

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"timm {timm.__version__}, Python {platform.python_version()}, GPU: {gpu}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def target_rows(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The issue's targets for one model, from whichever scenarios ran."""
    rows: list[tuple[str, str, str, str]] = []
    full, frozen, disc = r.get("full"), r.get("frozen80"), r.get("disc")
    if full:
        ratio = full["paired"]
        rows.append((name, "full fine-tune: wb step <= 1.05 x plain", f"{ratio:.3f}", verdict(ratio <= 1.05)))
    if frozen:
        speed = 1 / frozen["paired"]
        if "vit" not in name:
            rows.append((name, "~80% frozen: wb >= 1.15 x faster than plain", f"{speed:.3f}x", verdict(speed >= 1.15)))
        else:
            rows.append((name, "~80% frozen: wb no slower than plain (<= 1.05)", f"{1 / speed:.3f}",
                         verdict(1 / speed <= TOLERANCE)))
    if frozen and full and name == "resnet18":
        vs_full = full["workbench"] / frozen["workbench"]
        rows.append((name, "~80% frozen: wb >= 2.5 x faster than wb full", f"{vs_full:.2f}x "
                     f"(vs plain full {full['plain'] / frozen['workbench']:.2f}x)", verdict(vs_full >= 2.5)))
    c = r.get("cached80")
    if c:
        sp = c["plain_epoch"] / c["wb_epoch2"]
        rows.append((name, "~80% frozen, cache: epoch 2+ >= 3 x faster", f"{sp:.1f}x" + ("" if c["cached"] else
                     " (cache not used)"), verdict(sp >= 3)))
    p = r.get("probe")
    if p:
        sp = p["plain_epoch"] / p["wb_epoch2"]
        rows.append((name, "linear probe, cache: epoch 2+ >= 50 x faster", f"{sp:.1f}x" + ("" if p["cached"] else
                     " (cache not used)"), verdict(sp >= 50)))
        e1 = p["wb_epoch1_wall"] / p["eval"]
        rows.append((name, "linear probe: wb epoch 1 <= plain eval pass (<= 1.05)", f"{e1:.3f}",
                     verdict(e1 <= TOLERANCE)))
    if disc:
        ratio = disc["paired"]
        rows.append((name, "discriminative LRs: wb/plain ~ 1.0 (<= 1.05)", f"{ratio:.3f}", verdict(ratio <= TOLERANCE)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="timm names (default: the three CPU models, "
                        "plus resnet50 when CUDA is available)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side in scenarios 1, 2, 5")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side before timing")
    parser.add_argument("--batches", type=int, default=8, help="batches per epoch in scenarios 3 and 4")
    parser.add_argument("--wb-epochs", type=int, default=4, help="workbench epochs in scenarios 3 and 4")
    parser.add_argument("--plain-epochs", type=int, default=1, help="timed plain epochs in scenarios 3 and 4")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per memory subprocess")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS,
                        help="which scenarios to run (default: all)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-inspect", action="store_true")
    parser.add_argument("--quick", action="store_true", help="resnet18 only, 1 timed step, 3 batches per epoch")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    parser.add_argument("--_memory", nargs=4, metavar=("MODEL", "SCENARIO", "SIDE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._memory:
        name, scenario, side, steps = args._memory
        print(json.dumps(memory_child(name, scenario, side, int(steps))))
        return 0
    if args.quick:
        args.models = args.models or ["resnet18"]
        args.steps, args.batches, args.wb_epochs = 1, 3, 3
    models = args.models or (CPU_MODELS + (CUDA_EXTRA if torch.cuda.is_available() else []))

    print(f"# {machine()}")
    print(f"# command: python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"# batch {BATCH}, {SIZE[1]}x{SIZE[2]}, {CLASSES} classes, device {device()}, warm-up {args.warmup}, "
          f"timed steps {args.steps}, epochs of {args.batches} batches", flush=True)
    t_start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    rows: list[tuple[str, str, str, str]] = []  # (model, target, measured, verdict)

    for name in models:
        r: dict[str, Any] = {}
        results[name] = r
        print(f"\n## {name}", flush=True)
        for scenario, label in (("full", "1 full fine-tune"), ("frozen80", "2 ~80% frozen"),
                                ("disc", "5 discriminative LRs")):
            if scenario not in args.scenarios:
                continue
            s = interleaved_steps(name, scenario, args.warmup, args.steps)
            r[scenario] = s
            print(f"{label:<24} frozen {s['frozen_fraction']:5.1%} of params | "
                  f"plain {s['plain']:6.3f} s/step {BATCH / s['plain']:6.1f} img/s | "
                  f"workbench {s['workbench']:6.3f} s/step {BATCH / s['workbench']:6.1f} img/s | "
                  f"wb/plain {s['workbench'] / s['plain']:.3f} (paired {s['paired']:.3f}) | naive loop "
                  f"{s['naive']:6.3f} s/step, wb/naive paired {s['paired_naive']:.3f}", flush=True)
        for scenario, label in (("cached80", "3 ~80% frozen, cache"), ("probe", "4 linear probe, cache")):
            if scenario not in args.scenarios:
                continue
            e = cached_epochs(name, scenario, args.batches, args.wb_epochs, args.plain_epochs)
            r[scenario] = e
            eval_txt = f" | plain eval pass {e['eval']:.2f} s" if e["eval"] is not None else ""
            print(f"{label:<24} plain epoch {e['plain_epoch']:6.2f} s ({e['plain_epoch'] / args.batches:.3f} s/step)"
                  f"{eval_txt} | workbench epoch 1 {e['wb_epoch1_wall']:6.2f} s "
                  f"({'fills the cache' if e['cached'] else 'no cache'}), epoch 2+ "
                  f"{e['wb_epoch2']:.3f} s (reported {statistics.median(e['wb_epoch_reported'] or [float('nan')]):.3f}"
                  f" s) | plain/wb2+ {e['plain_epoch'] / e['wb_epoch2']:.1f}x", flush=True)
            for note in e["cache"]:
                print(f"    cache: {note}")
        if not args.skip_memory and "memory" in args.scenarios:
            mem: dict[str, dict[str, Any]] = {}
            for scenario in ("full", "frozen80", "probe"):
                for side in ("plain", "workbench"):
                    m = measure_memory(name, scenario, side, args.memory_steps)
                    mem[f"{scenario}/{side}"] = m
                print(f"6 peak memory {scenario:<10} plain +{mib(mem[scenario + '/plain']['peak'] - mem[scenario + '/plain']['base'])}"
                      f" (peak {mib(mem[scenario + '/plain']['peak'])}) | workbench "
                      f"+{mib(mem[scenario + '/workbench']['peak'] - mem[scenario + '/workbench']['base'])} "
                      f"(peak {mib(mem[scenario + '/workbench']['peak'])})   [{mem[scenario + '/plain']['method']}]",
                      flush=True)
            r["memory"] = mem
        print(f"# elapsed {time.perf_counter() - t_start:.0f} s", flush=True)

        rows.extend(target_rows(name, r))
        if "memory" in r:
            mem = r["memory"]
            d = {k: v["peak"] - v["base"] for k, v in mem.items()}
            share = d["frozen80/workbench"] / d["full/workbench"]
            rows.append((name, "peak memory ~80% frozen <= 60% of full (wb)", f"{share:.1%} (plain {d['frozen80/plain'] / d['full/plain']:.1%})",
                         verdict(share <= 0.60)))

    if not args.skip_inspect:
        print("\n## inspect-time speed", flush=True)
        for name in INSPECT_MODELS:
            i = inspect_speed(name, ticks=20)
            i["cli_wall"] = cli_inspect_wall(name) if not args.quick else None
            results[f"inspect:{name}"] = i
            cli = f", `workbench inspect` wall {i['cli_wall']:.1f} s" if i["cli_wall"] else ""
            print(f"{name}: {i['modules']:,} modules, {i['params'] / 1e6:.1f} M params | model load {i['load']:.2f} s | "
                  f"tree build (no forward) {i['build'] * 1000:.1f} ms, forward pass {i['forward'] * 1000:.0f} ms | first "
                  f"resolve {i['first_resolve'] * 1000:.1f} ms | tick '{i['tick_path']}' + resolve median "
                  f"{i['tick'] * 1000:.1f} ms (resolve alone {i['resolve'] * 1000:.1f} ms, max {i['tick_max'] * 1000:.1f} ms)"
                  f"{cli}", flush=True)
            rows.append((name, "tick + resolve well under 50 ms", f"{i['tick'] * 1000:.1f} ms (max "
                         f"{i['tick_max'] * 1000:.1f})", verdict(i["tick_max"] < 0.050)))

    print("\n## targets (ratios within this run)")
    widths = [max(len(row[k]) for row in rows + [("model", "target", "measured", "verdict")]) for k in range(4)]
    header = ("model", "target", "measured", "verdict")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    print(f"\n# total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results, "targets": rows}, indent=2,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
