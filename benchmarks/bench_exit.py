"""What the end of a `workbench train` process costs: the console script's exit against a normal interpreter exit.

    python benchmarks/bench_exit.py                  # gradual unfreezing, 5 repetitions
    python benchmarks/bench_exit.py --strategy full --reps 7

The same run (bench_peers.py's task: resnet18, 200 digits at 64×64, 2 epochs) three ways, in
rotating order, each in its own process: ``workbench train`` (the console script: other threads,
atexit handlers and output finished, then the process ends without interpreter teardown);
``main()`` followed by a normal exit after ``gc.freeze()`` (what the script did before); ``main()``
followed by a plain normal exit. Per variant, medians of the process's CPU time (user + system)
and peak RSS as ``wait4`` reports them. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = {
    "console script (no teardown)": None,
    "main() + gc.freeze() + normal exit": "import gc, sys; from workbench import cli; c = cli.main(sys.argv[1:]); "
                                          "gc.freeze(); sys.exit(c)",
    "main() + normal exit": "import sys; from workbench import cli; sys.exit(cli.main(sys.argv[1:]))",
}


def run_once(variant: str, project: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    args = ["train", str(project), "--out", str(out), "--overwrite"]
    code = VARIANTS[variant]
    exe = Path(sys.executable).with_name("workbench")
    cmd = [str(exe), *args] if code is None else [sys.executable, "-c", code, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status >> 8}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    from bench_peers import STRATEGIES, base_plan, write_project, write_subset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="gradual", choices=list(STRATEGIES))
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-exit-"))
    plan = base_plan(2, write_subset(root / "images", 20))
    project = root / f"{args.strategy}.toml"
    write_project(plan, args.strategy, project)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WORKBENCH_CACHE_DIR": str(root / "cache")}
    names = list(VARIANTS)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    started = time.perf_counter()
    for rep in range(args.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(run_once(name, project, root / "run", env))
    print(f"# python benchmarks/bench_exit.py --strategy {args.strategy} --reps {args.reps} "
          f"({time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f})")
    print("| how the process ends | CPU s (median) | CPU s per run | peak RSS MiB (median) | peak RSS per run |")
    print("|---|---|---|---|---|")
    for name in names:
        cpu = [c for c, _ in results[name]]
        rss = [r for _, r in results[name]]
        print(f"| {name} | {statistics.median(cpu):.2f} | {' '.join(f'{c:.2f}' for c in cpu)} | "
              f"{statistics.median(rss):,.0f} | {' '.join(f'{r:.0f}' for r in rss)} |")


if __name__ == "__main__":
    main()
