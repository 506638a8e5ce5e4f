"""A 200,000-image folder: time to "ready to train", peak RSS and loader throughput against torchvision.

    python benchmarks/bench_big_folder.py                       # 200,000 JPEGs (32×32), 10 classes
    python benchmarks/bench_big_folder.py --images 20000 --batches 100 --workers 2

The folder is generated in a temp folder (a few encoded variants per class, written as bytes).
Each side runs in a fresh process, twice (first open with an empty cache folder, then reopened):

* workbench: ``open_images`` + ``open_data`` (listing, split, fingerprint, transforms) = ready to train;
* workbench, decoding every image at open (``WORKBENCH_EAGER_CHECK_FILES`` above the count: how every
  folder was opened before issue 26; ``--eager`` adds this side, it takes minutes at 200,000);
* plain: ``torchvision.datasets.ImageFolder(root, transform)`` (it lists the files, decodes none).

Peak RSS is the child's ``ru_maxrss``; "data RSS" subtracts the RSS after the imports. Throughput:
``--batches`` batches of 64 through each side's loader with the same workers and the same timm
transform, in one process, alternating sides (``--rounds``), so machine load hits both alike.
The workbench side is its training loader (``EpochSampler`` + ``WithIndex``: seeded order, per-image
seeds). Prints medians; asserts nothing.
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
from pathlib import Path

from loader_timing import CHILD_PRELUDE, alternating_rates, class_jpegs  # benchmarks/ is the script's folder

OPEN_CHILD = CHILD_PRELUDE + r"""
side, root = sys.argv[1], sys.argv[2]
import torch, timm.data, torchvision.datasets  # imports outside the measured time
from workbench.data import open_data, open_images, build_transform
from workbench.plan import DataConfig
from workbench.spec import ModelSpec
spec = ModelSpec("bench", 10, input_size=(3, 32, 32))
base = rss_mib()
c, w = cpu(), time.perf_counter()
if side.startswith("workbench"):
    bundle = open_data(DataConfig(path=root, val_split=0.1), None, spec, augment=False)
    n = len(bundle.train) + len(bundle.val)
else:
    ds = torchvision.datasets.ImageFolder(root, transform=build_transform(spec, train=False, augment=False))
    n = len(ds)
print(json.dumps({"cpu": cpu() - c, "wall": time.perf_counter() - w, "n": n, "rss": rss_mib(), "base": base}))
"""


def write_folder(root: Path, images: int, classes: int = 10, variants: int = 16) -> float:
    """``images`` 32×32 JPEGs in ``classes`` folders, from ``variants`` encodings per class; seconds taken."""
    start = time.perf_counter()
    blobs = class_jpegs(classes, variants)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        c = i % classes
        (root / f"class{c:02d}" / f"img{i:07d}.jpg").write_bytes(blobs[c][i // classes % variants])
    return time.perf_counter() - start


def open_in_child(side: str, root: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(cache)}
    if side == "workbench-eager":
        env["WORKBENCH_EAGER_CHECK_FILES"] = str(10**12)
    out = subprocess.run([sys.executable, "-c", OPEN_CHILD, side, str(root)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(root: Path, batches: int, workers: int, rounds: int) -> tuple[list[float], list[float]]:
    """Images per second through each side's loader, ``rounds`` alternating runs of ``batches`` batches."""
    import torch
    import torchvision.datasets

    from workbench.data import build_transform, open_data
    from workbench.plan import DataConfig
    from workbench.spec import ModelSpec
    from workbench.training.sampler import EpochSampler, make_loader

    spec = ModelSpec("bench", 10, input_size=(3, 32, 32))
    bundle = open_data(DataConfig(path=str(root), val_split=0.0), None, spec, augment=False)
    sampler = EpochSampler(len(bundle.train), seed=0, drop_lone_last_of=64)
    ours = make_loader(bundle.train, sampler, 64, 0, workers, torch.device("cpu"))
    plain_set = torchvision.datasets.ImageFolder(str(root), transform=build_transform(spec, False, False))
    plain = torch.utils.data.DataLoader(plain_set, batch_size=64, shuffle=True, num_workers=workers,
                                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    return alternating_rates(ours, sampler, plain, "plain", batches, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=150, help="timed batches of 64 per side and round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where to make the temp folder (default: the system's)")
    parser.add_argument("--eager", action="store_true", help="also open it decoding every image (as before)")
    parser.add_argument("--no-throughput", action="store_true", help="only the open figures")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-big-", dir=args.dir) as tmp:
        root = Path(tmp) / "data"
        made = write_folder(root, args.images)
        print(f"wrote {args.images:,} JPEGs (32×32) in {made:.1f} s", flush=True)
        for side in ("workbench", "workbench-eager", "plain") if args.eager else ("workbench", "plain"):
            cache = Path(tmp) / f"cache-{side}"
            for label in ("first open", "reopened"):
                r = open_in_child(side, root, cache)
                print(f"{side:15s} {label:10s}: ready to train in {r['wall']:.2f} s wall ({r['cpu']:.2f} CPU-s), "
                      f"{r['n']:,} images, peak RSS {r['rss']:.0f} MiB (data {r['rss'] - r['base']:.0f} MiB, "
                      f"{(r['rss'] - r['base']) * 2**20 / r['n']:.0f} B/image)", flush=True)
        if args.no_throughput:
            return
        ours, plain = throughput(root, args.batches, args.workers, args.rounds)
        print(f"loader throughput, {args.workers} workers, {args.batches} batches of 64 × {args.rounds} rounds "
              f"(medians): workbench {statistics.median(ours):.0f} img/s, torchvision ImageFolder + DataLoader "
              f"{statistics.median(plain):.0f} img/s (ratio {statistics.median(ours) / statistics.median(plain):.2f});"
              f" each round {[round(x) for x in ours]} vs {[round(x) for x in plain]}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
