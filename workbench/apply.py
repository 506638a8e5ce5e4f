"""Applying a resolved plan to a live model: requires_grad, BatchNorm modes, optimizer groups.

Applying never changes a weight or a statistic; it only sets flags and collects tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import PlanError
from workbench.resolve import Resolution

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class AppliedPlan:
    """The plan's effect on one model. Call ``set_train_mode`` instead of ``model.train()``."""

    resolution: Resolution
    param_groups: list[dict[str, Any]]
    frozen_batchnorm: list["nn.Module"] = field(default_factory=list)

    def set_train_mode(self, model: "nn.Module") -> None:
        """``model.train()``, then frozen BatchNorm layers back to eval so their statistics never move."""
        model.train()
        for bn in self.frozen_batchnorm:
            bn.eval()

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.param_groups]


def apply_plan(model: "nn.Module", resolution: Resolution) -> AppliedPlan:
    """Set ``requires_grad`` per parameter and return optimizer groups (trainable parameters only)."""
    tree = resolution.tree
    named = dict(model.named_parameters())
    if len(named) != len(tree.params) or any(p.name not in named for p in tree.params):
        raise PlanError("the model's parameters do not match the layer tree it was resolved against")
    for p in tree.params:
        named[p.name].requires_grad_(resolution.param_trainable[p.index])
    modules = dict(model.named_modules())
    frozen_bn = [modules[tree.nodes[i].path] for i in resolution.bn_eval]
    param_groups = []
    for group in resolution.groups:
        if not group.params:
            continue
        param_groups.append({
            "name": group.name,
            "params": [named[tree.params[i].name] for i in group.params],
            "lr": group.lr,
            "weight_decay": group.weight_decay,
        })
    return AppliedPlan(resolution, param_groups, frozen_bn)
