"""One training step after layer4 is unfrozen (gradual unfreezing's second state): the workbench's path
against a competent plain loop's, in one process, interleaved.

    python benchmarks/bench_gradual_step.py

Workbench path: the frozen trunk (stem..layer3) as its BatchNorm-folded copy under inference mode, then
layer4 + fc with autograd, fused AdamW. Plain path: the whole model forward (frozen layers without
gradients, frozen BatchNorm in eval), backward, torch's default AdamW. resnet18, batch 32 at 64×64,
channels_last. Prints median CPU milliseconds per step; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from workbench.training import trunk_features as fc  # noqa: E402


def make() -> torch.nn.Module:
    m = timm.create_model("resnet18", num_classes=10).to(memory_format=torch.channels_last)
    for p in m.parameters():
        p.requires_grad_(False)
    for mod in (m.layer4, m.fc):
        for p in mod.parameters():
            p.requires_grad_(True)
    return m


def frozen_bn_eval(mod: torch.nn.Module) -> None:
    mod.train()
    for x in mod.modules():
        if isinstance(x, torch.nn.BatchNorm2d):
            x.eval()


def cpu_ms(fn, n: int = 12) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    plain_model = make()
    frozen_bn_eval(plain_model)
    plain_opt = torch.optim.AdamW([p for p in plain_model.parameters() if p.requires_grad], lr=1e-3)

    def plain() -> None:
        F.cross_entropy(plain_model(x), y).backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    wb_model = make()
    split = fc.split_frozen_trunk(wb_model, frozen_bn_eval)
    frozen_bn_eval(wb_model)
    folded = fc.folded_trunk(split, True)
    trunk = folded[0] if folded is not None else split.trunk
    wb_opt = torch.optim.AdamW([p for p in wb_model.parameters() if p.requires_grad], lr=1e-3, fused=True)

    def workbench() -> None:
        with torch.inference_mode():
            features = trunk(x)
        F.cross_entropy(split.head_train(features.clone()), y).backward()
        wb_opt.step()
        wb_opt.zero_grad(set_to_none=True)

    for round_ in range(3):
        print(f"round {round_ + 1}: plain loop step {cpu_ms(plain):.0f} ms CPU, "
              f"workbench step {cpu_ms(workbench):.0f} ms CPU")


if __name__ == "__main__":
    main()
