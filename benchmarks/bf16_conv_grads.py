"""Is the CPU's bfloat16 convolution weight gradient right? One conv, many shapes, against float32.

    python benchmarks/bf16_conv_grads.py [--trials 40]

For each shape (input side H, stride, kernel, full or depthwise, channels_last) the weight gradient
of ``mean(conv(x)²)`` under ``torch.autocast("cpu", bfloat16)`` is computed ``--trials`` times on the
same input and counted wrong when it is not finite or its largest error exceeds 5% of float32's
largest value (bfloat16 rounding stays near 0.5%). Prints the shapes with wrong gradients; the
training loop's ``amp = "auto"`` avoids bfloat16 on those (``workbench.training.devices.bf16_faulty_convs``).
"""

from __future__ import annotations

import argparse
import itertools

import torch


def wrong_gradients(side: int, stride: int, kernel: int, depthwise: bool, channels_last: bool, trials: int) -> int:
    torch.manual_seed(0)
    channels = 256
    conv = torch.nn.Conv2d(channels, channels if depthwise else 2 * channels, kernel, stride=stride,
                           padding=kernel // 2, groups=channels if depthwise else 1, bias=False)
    x = torch.randn(32, channels, side, side)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    conv(x).square().mean().backward()
    reference = conv.weight.grad.clone()
    wrong = 0
    for _ in range(trials):
        conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().square().mean().backward()
        got = conv.weight.grad
        if not torch.isfinite(got).all() or (got - reference).abs().max() > 0.05 * reference.abs().max():
            wrong += 1
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}, "
          f"AMX {torch.cpu._is_amx_tile_supported()}, {torch.get_num_threads()} threads")
    print("| input side | stride | kernel | depthwise | channels_last | wrong of", args.trials, "|")
    print("|---|---|---|---|---|---|")
    for side, stride, kernel, depthwise, channels_last in itertools.product(
            [1, 2, 3, 4, 7], [1, 2], [1, 3, 5], [False, True], [False, True]):
        if kernel == 1 and depthwise:
            continue
        wrong = wrong_gradients(side, stride, kernel, depthwise, channels_last, args.trials)
        if wrong:
            print(f"| {side} | {stride} | {kernel} | {depthwise} | {channels_last} | {wrong} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
