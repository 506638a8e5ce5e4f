"""Tar shards: time to "ready to train", peak RSS by shard count, and loader throughput against webdataset's.

    python benchmarks/bench_shards.py                        # 200,000 JPEGs (32×32) as 200 and as 2,000 shards
    python benchmarks/bench_shards.py --images 20000 --shards 20,200 --batches 50

The same images are written twice (WebDataset layout with ``tarfile``: ``key.jpg`` + ``key.cls``,
class names in ``classes.json``), once per shard count, so peak RSS against the number of shards shows
whether memory is flat in it. "Ready to train" is ``open_data`` (header-only index of every shard,
labels, the fixed validation shards, fingerprint) in a fresh process; peak RSS is its ``ru_maxrss``.

Throughput: ``--batches`` batches of 64 through the workbench's training loader (``EpochSampler``:
a seeded permutation over all samples, each read by seeking into its shard) and through webdataset's
own streaming pipeline (``WebDataset(urls, shardshuffle=100).shuffle(1000).decode("pil")``, the same
timm transform, ``WebLoader``), same workers, alternating (``--rounds``). Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from loader_timing import CHILD_PRELUDE, alternating_rates, class_jpegs  # benchmarks/ is the script's folder

OPEN_CHILD = CHILD_PRELUDE + r"""
import torch, timm.data, webdataset  # imports outside the measured time
from workbench.data import open_data
from workbench.plan import DataConfig
from workbench.spec import ModelSpec
base = rss_mib()
c, w = cpu(), time.perf_counter()
bundle = open_data(DataConfig(dataset="shards", path=sys.argv[1], val_split=0.05), None,
                   ModelSpec("bench", 10, input_size=(3, 32, 32)), augment=False)
n = len(bundle.train) + len(bundle.val)
print(json.dumps({"cpu": cpu() - c, "wall": time.perf_counter() - w, "n": n, "rss": rss_mib(), "base": base}))
"""


def write_shards(root: Path, images: int, shards: int, classes: int = 10, variants: int = 16) -> float:
    start = time.perf_counter()
    blobs = class_jpegs(classes, variants)
    root.mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps([f"class{c:02d}" for c in range(classes)]))
    per_shard = -(-images // shards)
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(s * per_shard, min(images, (s + 1) * per_shard)):
                c = i % classes
                for ext, data in (("jpg", blobs[c][i // classes % variants]), ("cls", str(c).encode())):
                    info = tarfile.TarInfo(f"{i:08d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return time.perf_counter() - start


def open_in_child(root: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", OPEN_CHILD, str(root)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(root: Path, batches: int, workers: int, rounds: int) -> tuple[list[float], list[float]]:
    import torch
    import webdataset as wds

    from workbench.data import build_transform, open_data
    from workbench.plan import DataConfig
    from workbench.spec import ModelSpec
    from workbench.training.sampler import EpochSampler, make_loader

    spec = ModelSpec("bench", 10, input_size=(3, 32, 32))
    transform = build_transform(spec, False, False)
    bundle = open_data(DataConfig(dataset="shards", path=str(root), val_split=0.0), None, spec, augment=False)
    sampler = EpochSampler(len(bundle.train), seed=0, drop_lone_last_of=64)
    ours = make_loader(bundle.train, sampler, 64, 0, workers, torch.device("cpu"))
    urls = [str(p) for p in sorted(root.glob("*.tar"))]
    pipeline = (wds.WebDataset(urls, shardshuffle=100, nodesplitter=wds.split_by_node, empty_check=False)
                .shuffle(1000).decode("pil").to_tuple("jpg", "cls").map_tuple(transform, int).batched(64))
    plain = wds.WebLoader(pipeline, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    return alternating_rates(ours, sampler, plain, "webdataset", batches, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--shards", default="200,2000", help="shard counts to compare, comma-separated")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    counts = [int(x) for x in args.shards.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        for shards in counts:
            root = Path(tmp) / f"shards{shards}"
            made = write_shards(root, args.images, shards)
            print(f"wrote {args.images:,} JPEGs (32×32) into {shards:,} shards in {made:.1f} s", flush=True)
            for label in ("first open", "reopened"):
                r = open_in_child(root, Path(tmp) / f"cache{shards}")
                print(f"{shards:5,} shards {label:10s}: ready to train in {r['wall']:.2f} s wall ({r['cpu']:.2f} "
                      f"CPU-s), {r['n']:,} samples, peak RSS {r['rss']:.0f} MiB (data {r['rss'] - r['base']:.0f} "
                      f"MiB, {(r['rss'] - r['base']) * 2**20 / r['n']:.0f} B/sample)", flush=True)
        root = Path(tmp) / f"shards{counts[0]}"
        ours, plain = throughput(root, args.batches, args.workers, args.rounds)
        print(f"loader throughput, {counts[0]} shards, {args.workers} workers, {args.batches} batches of 64 × "
              f"{args.rounds} rounds (medians): workbench {statistics.median(ours):.0f} img/s, webdataset "
              f"pipeline {statistics.median(plain):.0f} img/s (ratio "
              f"{statistics.median(ours) / statistics.median(plain):.2f}); each round {[round(x) for x in ours]} "
              f"vs {[round(x) for x in plain]}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
