"""Feature visualisation: optimise an input image that maximises a channel (what the channel looks for).

Our own ~100 lines after Lucid/Lucent (torch-lucent 0.1.8 dates from 2021 and pins old torch APIs): the
image is parametrised in a decorrelated Fourier basis (spectrum scaled by 1/frequency, colours through
ImageNet's colour-correlation square root), and every step sees it randomly padded, jittered, scaled and
rotated, which is what keeps high-frequency noise out and makes the pictures readable. The channels of
one call are optimised together as one batch (one image per channel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.looking.inputs import find_module, first_tensor, spatial

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

# Lucid's colour-correlation square root for ImageNet (lucid/optvis/param/color.py).
COLOR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
MAX_SIDE = 512
STEPS = 128  # Lucid uses 512; with the Fourier parametrisation the pictures settle by ~100
MAX_CHANNELS = 64  # one optimised image per channel, all in one batch


class Cancelled(WorkbenchError):
    """The visualisation was cancelled; nothing is returned."""


class _Reached(Exception):
    """Raised by the hook once the layer has run: the rest of the model is not needed."""


@dataclass
class ChannelPicture:
    layer: str
    channel: int
    activation: float  # the channel's mean activation on the final image
    pixels: "np.ndarray"  # H×W×3 uint8


def parse_channels(text: str) -> list[int]:
    """Channel indices from ``0,3,7`` or ``0-7`` (or both: ``0-3,9``)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            out.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        raise WorkbenchError(f"expected channel indices like 0,3,7 or 0-7, not {text!r}") from None
    if not out or min(out) < 0:
        raise WorkbenchError(f"expected channel indices like 0,3,7 or 0-7, not {text!r}")
    if len(out) > MAX_CHANNELS:
        raise WorkbenchError(f"at most {MAX_CHANNELS} channels at once (one picture each), not {len(out)}")
    return out


def fourier_image(batch: int, side: int, decay: float = 1.0, seed: int = 0) -> tuple["torch.Tensor", Callable[[], "torch.Tensor"]]:
    """A learnable spectrum and a function giving the (batch, 3, side, side) RGB image in [0, 1] it stands for."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(side)[:, None]
    fx = torch.fft.rfftfreq(side)[None, :]
    scale = 1.0 / torch.clamp(torch.sqrt(fx * fx + fy * fy), min=1.0 / side) ** decay
    spectrum = (torch.randn(batch, 3, side, side // 2 + 1, 2, generator=generator) * 0.01).requires_grad_(True)
    colors = torch.tensor(COLOR_CORRELATION_SQRT)
    colors = colors / colors.norm(dim=0).max()

    def image() -> "torch.Tensor":
        complex_spectrum = torch.view_as_complex(spectrum) * scale
        decorrelated = torch.fft.irfftn(complex_spectrum, s=(side, side), norm="ortho") / 4.0
        rgb = torch.einsum("bchw,dc->bdhw", decorrelated, colors)
        return torch.sigmoid(rgb)

    return spectrum, image


def _transform(images: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor":
    """Lucid's standard robustness transforms: pad, jitter 8, scale ±5%, rotate ±5°, jitter 4."""
    import torch
    import torch.nn.functional as F

    def jitter(x: torch.Tensor, d: int) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(-d, d + 1, (2,), generator=generator))
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    x = F.pad(images, (12, 12, 12, 12), mode="constant", value=0.5)
    x = jitter(x, 8)
    s = [1.0, 0.975, 1.025, 0.95, 1.05][int(torch.randint(0, 5, (1,), generator=generator))]
    angle = math.radians(float(torch.randint(-5, 6, (1,), generator=generator)))
    theta = torch.tensor([[s * math.cos(angle), -s * math.sin(angle), 0.0],
                          [s * math.sin(angle), s * math.cos(angle), 0.0]]).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return jitter(x, 4)


def visualise(model: "nn.Module", layer: str, channels: list[int], mean: tuple[float, ...], std: tuple[float, ...],
              side: int = 128, steps: int = STEPS, lr: float = 0.05, seed: int = 0,
              progress: Callable[[int, int], bool] = lambda _s, _t: True) -> list[ChannelPicture]:
    """One image per channel of ``layer`` that maximises its mean activation; ``progress`` returning False cancels.

    Works on a copy of ``model`` (eval mode, channels-last: depthwise convolutions run ~2.5× faster that
    way on CPU), so the model itself is never touched, even while it trains.
    """
    import copy

    import torch

    if not channels:
        raise WorkbenchError("give at least one channel to visualise")
    if not 16 <= side <= MAX_SIDE:
        raise WorkbenchError(f"the picture side must be between 16 and {MAX_SIDE} pixels, not {side}")
    if steps < 1:
        raise WorkbenchError(f"steps must be at least 1, not {steps}")
    find_module(model, layer)
    model = copy.deepcopy(model).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    module = find_module(model, layer)
    seen: list[torch.Tensor] = []

    def hook(_m: Any, _i: Any, out: Any) -> None:
        tensor = first_tensor(out)
        if tensor is not None:
            seen.append(tensor)
        raise _Reached

    def run(images: "torch.Tensor") -> None:
        seen.clear()
        try:
            model(((images - norm_mean) / norm_std).contiguous(memory_format=torch.channels_last))
        except _Reached:
            pass

    spectrum, image = fourier_image(len(channels), side, seed=seed)
    optimiser = torch.optim.Adam([spectrum], lr=lr)
    norm_mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    norm_std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(len(channels))
    wanted = torch.tensor(channels)
    handle = module.register_forward_hook(hook)
    try:
        for step in range(steps):
            optimiser.zero_grad()
            run(_transform(image(), generator))
            maps = _channel_maps(seen, layer, model, channels)
            loss = -maps[index, wanted].mean()
            loss.backward()
            optimiser.step()
            if not progress(step + 1, steps):
                raise Cancelled(f"feature visualisation of {layer} cancelled at step {step + 1} of {steps}")
        with torch.no_grad():
            final = image()
            run(final)
            acts = _channel_maps(seen, layer, model, channels)[index, wanted].mean(dim=(1, 2))
    finally:
        handle.remove()
    pixels = (final.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    return [ChannelPicture(layer, c, float(a), pixels[i]) for i, (c, a) in enumerate(zip(channels, acts.tolist()))]


def _channel_maps(seen: list["torch.Tensor"], layer: str, model: "nn.Module", channels: list[int]) -> "torch.Tensor":
    if not seen:
        raise WorkbenchError(f"layer {layer!r} did not run for an image input")
    maps = spatial(seen[0], model)
    if maps is None:
        out = seen[0]
        maps = out.reshape(out.shape[0], -1, 1, 1)
    bad = [c for c in channels if not 0 <= c < maps.shape[1]]
    if bad:
        raise WorkbenchError(f"channel {bad[0]} is out of range: {layer!r} has {maps.shape[1]} channels "
                             f"(0..{maps.shape[1] - 1})")
    return maps
