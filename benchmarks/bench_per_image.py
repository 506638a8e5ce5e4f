"""Per-image costs on this CPU, the inputs of the 1 M-image projection in RESULTS.md (§9).

    python benchmarks/bench_per_image.py                  # EfficientNet-Lite0 at 224 and at the demo's 48
    python benchmarks/bench_per_image.py --threads 1 --reps 7

Measures, per image, in one process with ``--threads`` intra-op threads (one core's figure at 1):

* decode: a 500×375 JPEG (an ImageNet-sized photo, quality 90) opened and decoded by Pillow, then
  the model's timm eval transform (resize, centre crop, normalise) -- what one loader worker does;
* trunk forward: EfficientNet-Lite0 (timm ``efficientnet_lite0``, random weights: the cost is the
  same) up to its pooled 1280-d features, batch 32, ``inference_mode``;
* cached head step: the 1280 → 1000 linear head's forward, cross-entropy, backward and AdamW step
  on cached features, batch 256 (what a cached epoch does per image).

Medians of ``--reps`` timings (after a warm-up), in CPU time of this process (with one thread, what one
core spends; wall time on a shared machine also counts the other tenants). Prints CPU milliseconds
per image; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import numpy as np
from PIL import Image


def timed(fn, reps: int) -> float:
    """Median CPU seconds of ``fn`` (process time: on a shared machine, wall time counts other tenants' turns)."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def costs(size: int, jpeg: bytes, reps: int) -> tuple[float, float, float]:
    """Milliseconds per image: decode + transform, trunk forward, cached head step."""
    import timm
    import torch

    from workbench.data import build_transform, to_rgb
    from workbench.spec import ModelSpec

    spec = ModelSpec("efficientnet_lite0", 1000, input_size=(3, size, size))
    transform = build_transform(spec, train=False, augment=False)

    def decode() -> None:
        for _ in range(20):
            with Image.open(io.BytesIO(jpeg)) as img:
                img.load()
                transform(to_rgb(img))

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
    batch = torch.randn(32, 3, size, size)

    def forward() -> None:
        with torch.inference_mode():
            model(batch)

    head = torch.nn.Linear(1280, 1000)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    features, labels = torch.randn(256, 1280), torch.randint(0, 1000, (256,))

    def head_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(head(features), labels).backward()
        optimizer.step()

    return (timed(decode, reps) / 20 * 1000, timed(forward, reps) / 32 * 1000, timed(head_step, reps) / 256 * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"{args.threads} intra-op thread(s)", flush=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    photo = np.stack([127 + 100 * np.sin(xx / (20 + 7 * k) + yy / 31) for k in range(3)], -1)
    photo = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()

    for size in (224, 48):
        decode_ms, forward_ms, head_ms = costs(size, jpeg, args.reps)
        print(f"EfficientNet-Lite0 at {size}×{size}: decode + transform {decode_ms:.2f} ms/image "
              f"(500×375 JPEG), trunk forward {forward_ms:.2f} ms/image (batch 32), cached head step "
              f"{head_ms:.4f} ms/image (batch 256, 1280 → 1000, AdamW)", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
