"""Levers for a full fine-tune step on this machine, measured side by side (issue 12.2).

    python benchmarks/bench_levers.py                          # eager, channels_last, fused AdamW, compile, bf16
    python benchmarks/bench_levers.py --variants nchw,cl,cl-fused --steps 10

resnet18 (timm, random init), batch 32 at 64×64, AdamW, one fixed batch. Variants (comma-separated):
``nchw`` (contiguous, torch's default AdamW: what a plain loop does), ``cl`` (channels_last),
``cl-fused`` (+ fused AdamW), ``compile`` (+ ``torch.compile`` of the model: forward and backward),
``bf16`` (+ bf16 autocast). The first step of each variant (allocation, oneDNN primitive creation,
compilation) is reported separately; then the variants take steps in a rotating order so machine
load hits all alike. CPU time is the process tree's (compile workers included). Prints medians and
ratios to ``cl`` (per-step CPU time); asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_peers import _tree_cpu  # noqa: E402

VARIANTS = ("nchw", "cl", "cl-fused", "compile", "bf16")


def make_step(base: torch.nn.Module, variant: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    net = copy.deepcopy(base)
    channels_last = variant != "nchw"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fused = variant in ("cl-fused", "compile", "bf16")
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01, fused=fused or None)
    forward = torch.compile(net) if variant == "compile" else net
    bf16 = variant == "bf16"

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant after the first")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    import os

    import timm

    names = [v for v in args.variants.split(",") if v]
    for v in names:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r} ({', '.join(VARIANTS)})")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2") if f" {f}" in flags]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {', '.join(isa) or '?'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"# python benchmarks/bench_levers.py {' '.join(sys.argv[1:])}: resnet18, batch {args.batch} at "
          f"{args.size}×{args.size}, AdamW", flush=True)
    torch.manual_seed(0)
    base = timm.create_model("resnet18", pretrained=False, num_classes=10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    steps = {}
    pid = os.getpid()
    for v in names:
        steps[v] = make_step(base, v, x, y)
        wall, cpu = time.perf_counter(), _tree_cpu(pid)
        loss = steps[v]()
        print(f"{v:<9} first step (incl. compilation) wall {time.perf_counter() - wall:7.1f} s, "
              f"CPU {_tree_cpu(pid) - cpu:7.1f} s, loss {loss:.5f}", flush=True)
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in names}
    for rep in range(args.steps):
        for v in names[rep % len(names):] + names[:rep % len(names)]:
            wall, cpu = time.perf_counter(), _tree_cpu(pid)
            steps[v]()
            times[v].append((time.perf_counter() - wall, _tree_cpu(pid) - cpu))
    ref = statistics.median(c for _, c in times["cl"]) if "cl" in times else None
    for v in names:
        w = statistics.median(a for a, _ in times[v])
        c = statistics.median(b for _, b in times[v])
        ratio = f", CPU ÷ cl {c / ref:.2f}" if ref else ""
        print(f"{v:<9} step: wall {w:.3f} s, CPU {c:.3f} s (median of {len(times[v])}){ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
