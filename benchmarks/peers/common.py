"""What every peer script shares: the task's data, model, strategies and the progress markers.

Imported by path from each tool's own process (and venv): numpy, Pillow, torch and timm only.
Markers go to stdout as ``@@ <name> <json>`` lines; the benchmark reads them as they come and
samples the process tree's CPU time at each one.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

# The stages timm's group_matcher gives resnet18, in model order (workbench's default groups).
GROUPS = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]
DISCRIMINATIVE = 1 / 2.6  # each earlier group's LR = the next one's × this


def mark(name: str, **info: Any) -> None:
    print(f"@@ {name} {json.dumps(info)}", flush=True)


def config() -> dict[str, Any]:
    return json.loads(sys.argv[1])


def preprocess(pixels: np.ndarray, size: int, resize: int, mean: tuple[float, ...], std: tuple[float, ...]
               ) -> torch.Tensor:
    """N×H×W×3 uint8 → N×3×size×size float32: bicubic resize of the short side to ``resize``, centre crop,
    normalise. The same tensors timm's eval transform gives (the benchmark checks that once)."""
    from PIL import Image

    out = torch.empty(len(pixels), 3, size, size)
    top = int(round((resize - size) / 2.0))
    for i, image in enumerate(pixels):
        img = Image.fromarray(image).resize((resize, resize), Image.Resampling.BICUBIC)
        arr = np.asarray(img.crop((top, top, top + size, top + size)), dtype=np.float32) / 255.0
        out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (out - m) / s


def load_data(cfg: dict[str, Any]) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    raw = np.load(cfg["data"])
    x = preprocess(raw["pixels"], cfg["size"], cfg["resize"], tuple(cfg["mean"]), tuple(cfg["std"]))
    y = torch.from_numpy(raw["labels"].astype(np.int64))
    train, val = torch.from_numpy(raw["train"]), torch.from_numpy(raw["val"])
    ds = torch.utils.data.TensorDataset
    return ds(x[train], y[train]), ds(x[val], y[val])


def model(cfg: dict[str, Any]) -> nn.Module:
    import timm

    torch.manual_seed(cfg["seed"])  # the workbench seeds the same way before building a random-init model
    return timm.create_model("resnet18", pretrained=False, num_classes=cfg["classes"])


def group_modules(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.get_submodule(name) for name in names] for names in GROUPS]


def trainable_groups(strategy: str, epoch: int, epochs: int) -> list[int]:
    """Indices of the groups that train in ``epoch`` (gradual: the head, then one group more per epoch)."""
    n = len(GROUPS)
    if strategy == "probe":
        return [n - 1]
    if strategy == "freeze_last":  # stem and stages 1-3 frozen: layer4 + fc train
        return [n - 2, n - 1]
    if strategy in ("full", "discriminative"):
        return list(range(n))
    if strategy == "gradual":
        return list(range(max(0, n - 1 - epoch), n))
    raise SystemExit(f"unknown strategy {strategy}")


def group_lr(strategy: str, index: int, lr: float) -> float:
    return lr * DISCRIMINATIVE ** (len(GROUPS) - 1 - index) if strategy == "discriminative" else lr


def set_frozen_bn_eval(net: nn.Module) -> None:
    """BatchNorm whose parameters are all frozen runs in eval mode (statistics frozen too)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


@torch.inference_mode()
def evaluate(net: nn.Module, loader: Any, channels_last: bool, bf16: bool = False) -> float:
    net.eval()
    correct = seen = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return correct / max(seen, 1)


def now() -> float:
    return time.perf_counter()
