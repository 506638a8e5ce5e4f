"""What every look needs: a module found by its path (with did-you-mean) and an image as the model is fed."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn
    from PIL import Image


@dataclass
class FedImage:
    """One image as the model sees it: the normalised ``tensor`` (1×C×H×W) and ``pixels`` (H×W×3 uint8, same crop)."""

    name: str
    tensor: "torch.Tensor"
    pixels: "np.ndarray"


def find_module(model: "nn.Module", path: str) -> "nn.Module":
    """The submodule at ``path`` ("" is the whole model); an unknown path names the closest existing ones."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    close = difflib.get_close_matches(path, [p for p in modules if p], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (`workbench inspect` lists the module paths)"
    raise WorkbenchError(f"the model has no layer {path!r}{hint}")


def load_image(path: str | Path) -> "Image.Image":
    """The image file decoded upright as RGB; one clear error when it is missing or does not decode."""
    from workbench.data import Item

    file = Path(path).expanduser()
    if not file.exists():
        raise WorkbenchError(f"image not found: {path}")
    if not file.is_file():
        raise WorkbenchError(f"{path} is a folder, not an image file")
    return Item(label=0, name=str(file), path=file).load()


def feed(image: "Image.Image | str | Path", spec: ModelSpec, name: str = "") -> FedImage:
    """``image`` through the model's evaluation transform (resize, centre crop, normalise), and the crop it sees."""
    import numpy as np

    from workbench.data import build_transform
    from workbench.predict import _per_channel

    if not isinstance(image, (str, Path)):
        pil = image
    else:
        name = name or str(image)
        pil = load_image(image)
    if len(spec.input_size) != 3:
        raise WorkbenchError(f"{spec.architecture} takes feature vectors, not images: there is no image to look at")
    channels = spec.input_size[0]
    if channels not in (1, 3):
        raise WorkbenchError(f"the model takes {channels}-channel input; only grayscale (1) or RGB (3) images work")
    spec = _per_channel(spec)
    from workbench.looking.modes import LOOK_LOCK

    transform = build_transform(spec, train=False, augment=False)
    with LOOK_LOCK:  # the transforms are modules: not while another thread traces (model_graph.trace)
        tensor = transform(pil.convert("L" if channels == 1 else "RGB"))
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    shown = np.clip(tensor.numpy() * std + mean, 0.0, 1.0)
    if channels == 1:
        shown = np.repeat(shown, 3, axis=0)
    pixels = (shown.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return FedImage(name, tensor.unsqueeze(0), pixels)


def first_tensor(value: Any) -> "torch.Tensor | None":
    """A module's output as one tensor: the first tensor of a tuple/list/dict output."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def prefix_tokens(model: "nn.Module") -> int:
    """How many class/register tokens lead a ViT's token sequence (timm's ``num_prefix_tokens``)."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    return 1 if getattr(model, "cls_token", None) is not None else 0


def token_grid(tokens: "torch.Tensor", prefix: int) -> "torch.Tensor | None":
    """(N, T, C) tokens as an (N, C, h, w) patch grid, the ``prefix`` class tokens set aside; None if not square."""
    import math

    if tokens.ndim != 3:
        return None
    patches = tokens[:, prefix:, :]
    side = math.isqrt(patches.shape[1])
    if side < 2 or side * side != patches.shape[1]:
        return None
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def spatial(output: "torch.Tensor", model: "nn.Module") -> "torch.Tensor | None":
    """A layer's output as (N, C, h, w) maps: conv maps as they are, ViT tokens on their patch grid; else None."""
    if output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
        return output
    if output.ndim == 3:
        return token_grid(output, prefix_tokens(model))
    return None


def spatial_layers(model: "nn.Module", example: "torch.Tensor") -> list[str]:
    """Paths of the modules whose output is spatial (maps or patch tokens), in execution order."""
    import torch

    order: list[str] = []
    hooks = []

    def hook_for(path: str) -> Any:
        def hook(_m: Any, _i: Any, out: Any) -> None:
            t = first_tensor(out)
            if t is not None and spatial(t, model) is not None and path not in order:
                order.append(path)
        return hook

    for path, module in model.named_modules():
        if path:
            hooks.append(module.register_forward_hook(hook_for(path)))
    from workbench.looking.modes import evaluation_mode

    try:
        with evaluation_mode(model), torch.inference_mode():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def last_spatial_layer(model: "nn.Module", example: "torch.Tensor") -> str:
    """The last module (in execution order) with a spatial output: where a class heatmap is usually taken."""
    order = spatial_layers(model, example)
    if not order:
        raise WorkbenchError("the model has no spatial layer (no output is a map or a grid of patch tokens), "
                             "so a class heatmap does not apply; activation maps show its layers as vectors")
    # A container ends when its last child does; prefer the leaf that finished last.
    return order[-1]
