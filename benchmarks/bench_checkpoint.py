"""What a run's final write costs: the checkpoint holding the weights as well, or naming the weights file.

    python benchmarks/bench_checkpoint.py             # resnet18, layer4 + fc trained (AdamW), 7 repetitions
    python benchmarks/bench_checkpoint.py --full      # every parameter trained

At the end of a run (and on stop) the Trainer writes ``model.safetensors`` and ``checkpoints/last.pt``.
Before, ``last.pt`` held every weight as well (resnet18: 44 MB twice); now it names the weights
file. Both ways write through the workbench's own writers into fresh files (as the atomic writes
do), alternating, from a channels_last model after one AdamW step. Prints the CPU time (user +
system, this process) and the bytes written; medians. Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import timm
import torch

from workbench.safetensors_file import write_safetensors
from workbench.training.checkpoint_file import Checkpoint, save_checkpoint


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every parameter trains (else layer4 + fc)")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).to(memory_format=torch.channels_last)
    for name, p in model.named_parameters():
        p.requires_grad = args.full or name.startswith(("layer4", "fc"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    model(torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)).sum().backward()
    optimizer.step()
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    meta = Checkpoint(2, 0, 0, {}, optimizer.state_dict(), [], [], [], [], {})
    root = Path(tempfile.mkdtemp(prefix="bench-checkpoint-"))

    def weights_twice(i: int) -> None:
        save_checkpoint(root / f"a{i}.pt", replace(meta, model=weights))
        write_safetensors(weights, root / f"a{i}.safetensors")

    def weights_once(i: int) -> None:
        write_safetensors(weights, root / f"b{i}.safetensors")
        save_checkpoint(root / f"b{i}.pt", replace(meta, model_file=f"b{i}.safetensors"))

    times: dict[str, list[float]] = {"weights in both files": [], "checkpoint names the weights file": []}
    ways = list(zip(times, (weights_twice, weights_once), strict=True))
    for i in range(args.reps):
        for name, write in (ways if i % 2 == 0 else ways[::-1]):
            start = cpu()
            write(i)
            times[name].append(cpu() - start)
    sizes = {"weights in both files": sum(f.stat().st_size for f in root.glob("a0.*")),
             "checkpoint names the weights file": sum(f.stat().st_size for f in root.glob("b0.*"))}
    trained = "every parameter" if args.full else "layer4 + fc"
    print(f"# python benchmarks/bench_checkpoint.py{' --full' if args.full else ''} (resnet18, {trained} trained, "
          f"AdamW, {args.reps} repetitions)")
    print("| final write | MB written | CPU s (median) | CPU s per repetition |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {sizes[name] / 1e6:.0f} | {statistics.median(values):.3f} | "
              f"{' '.join(f'{v:.3f}' for v in values)} |")
    for f in root.iterdir():
        f.unlink()
    root.rmdir()


if __name__ == "__main__":
    main()
