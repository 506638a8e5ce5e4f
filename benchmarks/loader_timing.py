"""What the big-folder and shard benchmarks share: the JPEGs they write, the measuring prelude of a child
process that opens a dataset, and loader throughput against a peer loader, timed in alternating rounds."""

from __future__ import annotations

import io
import time
from typing import Any


def class_jpegs(classes: int, variants: int) -> list[list[bytes]]:
    """``variants`` distinct 32×32 JPEG encodings per class (seeded; a class tints its own colour channel)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    blobs: list[list[bytes]] = []
    for c in range(classes):
        own = []
        for _ in range(variants):
            pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, "JPEG", quality=90)
            own.append(out.getvalue())
        blobs.append(own)
    return blobs

# Prepended to a child's script: peak RSS in MiB and CPU seconds of the process so far.
CHILD_PRELUDE = r"""
import json, resource, sys, time
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
"""


def alternating_rates(ours: Any, sampler: Any, peer: Any, peer_name: str, batches: int,
                      rounds: int) -> tuple[list[float], list[float]]:
    """Images per second of ``ours`` and ``peer`` (two loaders), each round in the other order so neither
    always runs second on warm caches; the first batch of each pass (workers starting) is not timed."""
    rates: dict[str, list[float]] = {"workbench": [], peer_name: []}
    order = (("workbench", ours), (peer_name, peer))
    for r in range(rounds):
        for side, loader in order if r % 2 == 0 else order[::-1]:
            if side == "workbench":
                sampler.set_epoch(r)
            it = iter(loader)
            next(it)
            start, n = time.perf_counter(), 0
            for _ in range(batches):
                n += len(next(it)[0])
            rates[side].append(n / (time.perf_counter() - start))
            del it
    return rates["workbench"], rates[peer_name]
