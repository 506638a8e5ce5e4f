"""[head] cuts in timm Vision Transformers through timm's own cut points, where torch.fx cannot trace the model.

A ViT whose patch embedding checks or resamples the image size in Python (``dynamic_img_size``,
e.g. timm's ``test_vit``) cannot be traced ("symbolically traced variables cannot be used as
inputs to control flow"). timm gives the same features without tracing: ``forward_intermediates``
(the tokens after block N, later blocks pruned with ``prune_intermediate_layers``),
``forward_features`` (the final norm's tokens) and ``forward_head(pre_logits=True)`` (the
pooled classifier input). The model keeps its class (a subclass with a new ``forward``) and
every module keeps its path; the classifier ``head`` is replaced by the new head.

Cut points: ``patch_embed``, ``blocks`` / ``blocks.N``, ``norm``, and the classifier's input
(``fc_norm``, ``head_drop``, or no cut). Anything else is refused with the list.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from workbench.plan import HeadSpec

_NEEDS = ("forward_intermediates", "prune_intermediate_layers", "forward_features", "forward_head", "blocks",
          "patch_embed", "head")
_PRE_LOGITS = ("fc_norm", "head_drop")
_CLASSES: dict[type, type] = {}


def is_timm_vit(model: Any) -> bool:
    """Whether ``model`` offers timm's ViT cut points (``forward_intermediates`` and friends)."""
    return all(hasattr(model, name) for name in _NEEDS)


def cut_points(model: Any) -> list[str]:
    return ["patch_embed", *(f"blocks.{i}" for i in range(len(model.blocks))), "norm", *_PRE_LOGITS]


def attach_vit_head(vit: "nn.Module", cut: str, spec: "HeadSpec", num_classes: int,
                    input_size: tuple[int, ...]) -> "nn.Module":
    """``vit`` cut at ``cut`` with a new ``head`` (changed in place and returned). Raises SurgeryError."""
    import torch.nn as nn

    model: Any = vit  # timm's ViT methods and attributes, beyond nn.Module's

    from workbench.surgery import SurgeryError, make_head

    kind = _kind(model, cut)
    if kind is None:
        raise SurgeryError(f"[head] cut {cut!r}: this ViT cannot be traced with torch.fx, so it is cut through "
                           f"timm's own cut points: {', '.join(_shown(cut_points(model)))}")
    if kind[0] == "block":
        model.prune_intermediate_layers([kind[1]], prune_norm=True, prune_head=True)
    elif kind[0] == "patch_embed":
        model.prune_intermediate_layers([0], prune_norm=True, prune_head=True)
        model.blocks = nn.Sequential()  # nothing after the patch embedding is used
    elif kind[0] == "tokens":
        model.fc_norm = nn.Identity()
    model.__class__ = _cut_class(type(model))
    model.workbench_cut = kind
    model.head = nn.Identity()
    was = model.training
    model.eval()
    try:
        import torch

        with torch.no_grad():
            feats = tuple(model(torch.zeros(1, *input_size)).shape[1:])
    finally:
        model.train(was)
    model.head = make_head(spec, feats, num_classes)
    return model


def _kind(model: Any, cut: str) -> tuple[str, int] | None:
    blocks = len(model.blocks)
    found = re.fullmatch(r"blocks(?:\.(\d+))?", cut)
    if found:
        index = int(found.group(1)) if found.group(1) is not None else blocks - 1
        return ("block", index) if index < blocks else None
    if cut == "patch_embed":
        return ("patch_embed", 0)
    if cut == "norm":
        return ("tokens", 0)
    if cut in _PRE_LOGITS:
        return ("pre_logits", 0)
    return None


def _shown(points: list[str]) -> list[str]:
    return points if len(points) <= 8 else [*points[:3], "…", *points[-5:]]


def _cut_class(base: type) -> type:
    if base not in _CLASSES:
        _CLASSES[base] = type(f"{base.__name__}Cut", (base,), {"forward": _forward, "__module__": __name__})
    return _CLASSES[base]


def _forward(self: Any, x: "torch.Tensor") -> "torch.Tensor":
    kind, index = self.workbench_cut
    if kind == "block":
        feats = self.forward_intermediates(x, indices=[index], output_fmt="NLC", intermediates_only=True)[0]
    elif kind == "patch_embed":
        feats = self.patch_embed(x)
        feats = feats.flatten(1, 2) if feats.dim() == 4 else feats  # (B, H, W, C) with a dynamic image size
    elif kind == "tokens":
        feats = self.forward_features(x)
    else:
        feats = self.forward_head(self.forward_features(x), pre_logits=True)
    return self.head(feats)
