"""What opening an image folder costs, with and without the recorded checks of an earlier run.

    python benchmarks/bench_open_folder.py                 # 400 JPEG photos (640×480) + 400 small PNGs
    python benchmarks/bench_open_folder.py --jpeg 2000 --png 0

Every image is decoded once when a folder is opened (unreadable files are skipped before training,
not in the middle of an epoch). The results are recorded per folder in the cache folder, so a later
process decodes only files whose size or modification time changed. Each repetition opens the
folder in a fresh process twice: with an empty cache folder ("first open") and again ("reopened").
Prints the CPU seconds (user + system of the child process) of ``open_images`` alone; medians.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = r"""
import json, resource, sys, time
from workbench.data import open_images
from workbench.plan import DataConfig
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c, w = cpu(), time.perf_counter()
images = open_images(DataConfig(path=sys.argv[1], dataset="folder"))
print(json.dumps({"cpu": cpu() - c, "wall": time.perf_counter() - w, "n": len(images.train) + len(images.val)}))
"""


def write_folder(root: Path, jpeg: int, png: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(jpeg):
        phase = rng.uniform(0, 6.28, 3)
        arr = np.stack([127 + 100 * np.sin(xx / (20 + 7 * k) + yy / 31 + phase[k]) for k in range(3)], -1)
        arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
        path = root / f"class{i % 4}" / f"photo{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, "JPEG", quality=90)
    for i in range(png):
        path = root / f"class{i % 4}" / f"small{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, "PNG")


def open_once(folder: Path, cache: Path) -> dict[str, float]:
    env = {"WORKBENCH_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpeg", type=int, default=400)
    parser.add_argument("--png", type=int, default=400)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        folder = Path(tmp) / "data"
        write_folder(folder, args.jpeg, args.png)
        first: list[float] = []
        again: list[float] = []
        for rep in range(args.reps):
            cache = Path(tmp) / f"cache{rep}"
            a = open_once(folder, cache)
            b = open_once(folder, cache)
            first.append(a["cpu"])
            again.append(b["cpu"])
            print(f"rep {rep}: {a['n']} images; first open {a['cpu']:.3f} CPU-s ({a['wall']:.3f} wall), "
                  f"reopened {b['cpu']:.3f} CPU-s ({b['wall']:.3f} wall)", flush=True)
        f, g = statistics.median(first), statistics.median(again)
        print(f"\n{args.jpeg} JPEG (640×480) + {args.png} PNG (32×32), medians of {args.reps}: first open {f:.3f} "
              f"CPU-s, reopened {g:.3f} CPU-s ({g / f:.2f} of the first)")


if __name__ == "__main__":
    main()
