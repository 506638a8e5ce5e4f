"""When does a BatchNorm-folded copy of a frozen trunk pay for itself? (``FOLD_MIN_PIXELS``)

    python benchmarks/bench_fold.py                  # 64×64 and 160×160, bf16 autocast and float32
    python benchmarks/bench_fold.py --sizes 224

For a freeze state whose trunk output is not cached, the Trainer can split the model (fx
tracing) and run a BatchNorm-folded inference copy of the frozen trunk, or run the model as it
is (frozen parameters need no autograd either way). Per configuration (resnet18, trunk = all but
fc, or stem + layer1-3): the split's and the fold's CPU cost, the trunk's CPU time per batch of
32 as is (eval-mode BatchNorm, autocast when bf16) and folded (under ``inference_mode``), steps
interleaved, medians of 21; then the break-even in images and in image pixels. Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics

import timm
import torch

from workbench.training import trunk_features as fc


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def set_train_mode(model: torch.nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()  # frozen BatchNorm


def measure(size: int, dtype: torch.dtype | None, trains: tuple[str, ...], reps: int = 21) -> str:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).to(memory_format=torch.channels_last)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(trains)
    fc.split_frozen_trunk(model, set_train_mode)  # warm (imports, first trace)
    start = cpu()
    split = fc.split_frozen_trunk(model, set_train_mode)
    split_cost = cpu() - start
    start = cpu()
    folded = fc.folded_trunk(split, True, dtype)
    fold_cost = cpu() - start
    assert folded is not None
    copy = folded[0]
    x = torch.randn(32, 3, size, size).contiguous(memory_format=torch.channels_last)
    set_train_mode(model)

    def as_is() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=dtype is not None):
            split.trunk(x)

    def through_copy() -> None:
        with torch.inference_mode():
            copy(x)

    times: dict[str, list[float]] = {"as is": [], "folded": []}
    for fn in (as_is, through_copy):
        fn()
    for _ in range(reps):
        for name, fn in (("as is", as_is), ("folded", through_copy)):
            start = cpu()
            fn()
            times[name].append(cpu() - start)
    plain, fast = statistics.median(times["as is"]), statistics.median(times["folded"])
    gain = (plain - fast) / 32
    setup = split_cost + fold_cost
    images = setup / gain if gain > 0 else float("inf")
    trunk = "all but fc" if trains == ("fc",) else "stem + layer1-3"
    return (f"| {size}×{size} | {'bf16' if dtype else 'float32'} | {trunk} | {split_cost * 1e3:.0f} + {fold_cost * 1e3:.0f} "
            f"| {plain * 1e3:.1f} | {fast * 1e3:.1f} | {gain * 1e3:.3f} | {images:,.0f} | {images * size * size / 1e6:.1f} M |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,160")
    args = parser.parse_args()
    dtypes: list[torch.dtype | None] = [None]
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        dtypes.insert(0, torch.bfloat16)
    print(f"# python benchmarks/bench_fold.py --sizes {args.sizes} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    print("| input | precision | frozen trunk | split + fold CPU ms | trunk ms / 32 as is | folded | saved ms / image "
          "| break-even images | image pixels |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        for dtype in dtypes:
            for trains in (("fc",), ("fc", "layer4")):
                print(measure(size, dtype, trains), flush=True)


if __name__ == "__main__":
    main()
