"""Activation maps: what one module outputs for an image, and per-channel statistics over a batch.

A spatial output (N, C, h, w) is shown as its most active channels, ViT tokens on their patch grid
(class tokens set aside), anything else (a pooled vector, logits) as its values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.looking.inputs import find_module, first_tensor, spatial
from workbench.looking.modes import evaluation_mode

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

MAX_BARS = 64  # a vector longer than this shows its largest values by magnitude


@dataclass
class ChannelMap:
    """One channel: its index, mean activation and map scaled to [0, 1] (``low``/``high`` are the raw range)."""

    index: int
    mean: float
    low: float
    high: float
    map: "np.ndarray"  # h×w float32 in [0, 1]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "mean": self.mean, "min": self.low, "max": self.high}


@dataclass
class LayerLook:
    """What a layer outputs for one image: channel maps (``kind`` "maps" or "tokens") or a vector ("vector")."""

    layer: str
    type_name: str
    shape: tuple[int, ...]
    kind: str
    channels: list[ChannelMap] = field(default_factory=list)
    values: list[tuple[int, float]] = field(default_factory=list)  # (index, value) for a vector
    width: int = 0  # channels (maps) or values (vector) the layer has in all

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"layer": self.layer, "type": self.type_name, "output_shape": list(self.shape),
                                "kind": self.kind, "width": self.width}
        if self.kind == "vector":
            data["values"] = [{"index": i, "value": v} for i, v in self.values]
        else:
            data["channels"] = [c.to_json() for c in self.channels]
        return data


@dataclass
class ChannelStats:
    """Per-channel statistics of one layer over a batch of images."""

    layer: str
    images: int
    mean: list[float]
    zero_fraction: list[float]  # share of exactly-zero outputs (a ReLU's dead units)
    dead: list[int]  # channels with the same value everywhere, on every image: they carry nothing

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "images": self.images, "mean": self.mean,
                "zero_fraction": self.zero_fraction, "dead": self.dead}


def capture(model: "nn.Module", layer: str, inputs: "torch.Tensor") -> "torch.Tensor":
    """The output of ``layer`` (its first tensor) for ``inputs``, in eval mode without gradients."""
    import torch

    module = find_module(model, layer)
    seen: list[torch.Tensor] = []

    def hook(_m: Any, _i: Any, out: Any) -> None:
        t = first_tensor(out)
        if t is not None and not seen:
            seen.append(t.detach().float().cpu())

    handle = module.register_forward_hook(hook)
    try:
        with evaluation_mode(model), torch.inference_mode():
            model(inputs)
    finally:
        handle.remove()
    if not seen:
        raise WorkbenchError(f"layer {layer!r} did not run for this input (it is not on the forward path)")
    return seen[0]


def look(model: "nn.Module", layer: str, inputs: "torch.Tensor", top: int = 16) -> LayerLook:
    """The ``top`` most active channels of ``layer`` for the first image of ``inputs`` (or its values)."""
    if top < 1:
        raise WorkbenchError(f"--top must be at least 1, not {top}")
    module = find_module(model, layer)
    output = capture(model, layer, inputs)
    shape = tuple(output.shape)
    maps = spatial(output, model)
    if maps is None:
        flat = output[0].reshape(-1)
        order = flat.abs().argsort(descending=True)[:MAX_BARS].sort().values if flat.numel() > MAX_BARS else None
        indices = order.tolist() if order is not None else list(range(flat.numel()))
        values = [(int(i), float(flat[i])) for i in indices]
        return LayerLook(layer, type(module).__name__, shape, "vector", values=values, width=flat.numel())
    return LayerLook(layer, type(module).__name__, shape, "maps" if output.ndim == 4 else "tokens",
                     channels=top_channels(maps[0], top), width=maps.shape[1])


def top_channels(maps: "torch.Tensor", top: int) -> list[ChannelMap]:
    """The ``top`` most active channels of C×h×w ``maps`` (mean |activation|), each map scaled to [0, 1].

    Activity is the mean magnitude: the mean itself for a ReLU's output, and for a signed output (a conv
    before its norm, ViT tokens) an edge detector's ± responses count instead of cancelling out.
    """
    means = maps.mean(dim=(1, 2))
    order = maps.abs().mean(dim=(1, 2)).argsort(descending=True)[:top].tolist()
    out = []
    for i in order:
        m = maps[i]
        low, high = float(m.min()), float(m.max())
        scaled = (m - low) / (high - low) if high > low else m * 0
        out.append(ChannelMap(int(i), float(means[i]), low, high, scaled.numpy().astype("float32")))
    return out


def channel_stats(model: "nn.Module", layer: str, batches: "Any") -> ChannelStats:
    """Mean, share of zeros and dead (constant) channels of ``layer`` over every image in ``batches``."""
    import torch

    total: torch.Tensor | None = None
    zeros: torch.Tensor | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    count = 0
    images = 0
    for batch in batches:
        output = capture(model, layer, batch)
        maps = spatial(output, model)
        values = maps.flatten(2) if maps is not None else output.reshape(output.shape[0], -1, 1)
        per = values.transpose(0, 1).reshape(values.shape[1], -1)  # C × (N·positions)
        sums, zs = per.sum(dim=1), (per == 0).sum(dim=1).float()
        mins, maxs = per.min(dim=1).values, per.max(dim=1).values
        if total is None or zeros is None or low is None or high is None:
            total, zeros, low, high = sums, zs, mins, maxs
        else:
            total, zeros = total + sums, zeros + zs
            low, high = torch.minimum(low, mins), torch.maximum(high, maxs)
        count += per.shape[1]
        images += output.shape[0]
    if total is None or zeros is None or low is None or high is None:
        raise WorkbenchError("no images to compute channel statistics over")
    dead = [int(i) for i in torch.nonzero(high == low).flatten().tolist()]
    return ChannelStats(layer, images, (total / count).tolist(), (zeros / count).tolist(), dead)
