"""A loaded model with its layer tree and the plan being edited: what the CLI and GUI hold."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.apply import AppliedPlan, apply_plan
from workbench.backbone import Backbone
from workbench.groups import compute_stages, default_groups
from workbench.layer_tree import LayerTree, build_layer_tree
from workbench.model_request import request_from_plan
from workbench.plan import AdapterConfig, FinetunePlan, GroupConfig
from workbench.resolve import Resolution, resolve_plan
from workbench.sources import load_backbone

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    import torch.nn as nn

    from workbench.spec import ModelSpec


@dataclass
class TrainedModel:
    """A trained model as a run leaves it: the module, its spec, the plan as run and the recipe's text."""

    module: "nn.Module"
    spec: "ModelSpec"
    plan: FinetunePlan
    recipe_toml: str


@dataclass
class Workspace:
    backbone: Backbone
    tree: LayerTree
    plan: FinetunePlan
    project_path: Path | None = None
    _resolution: Resolution | None = field(default=None, repr=False)

    @classmethod
    def from_backbone(cls, backbone: Backbone, plan: FinetunePlan | None = None) -> "Workspace":
        tree = build_tree(backbone)
        plan = plan or FinetunePlan()
        plan.model.num_classes = plan.model.num_classes or backbone.spec.num_classes
        return cls(backbone, tree, plan)

    @classmethod
    def from_plan(cls, plan: FinetunePlan, project_path: Path | None = None) -> "Workspace":
        backbone = load_backbone(request_from_plan(plan))
        if plan.head is not None:  # [head]: the single place a plan's model gets its cut + new head
            from workbench.surgery import apply_to_backbone

            backbone = apply_to_backbone(backbone, plan.head, plan.model.num_classes)
        if plan.model.label_names and len(plan.model.label_names) == backbone.spec.num_classes:
            backbone.spec.label_names = list(plan.model.label_names)
        ws = cls.from_backbone(backbone, plan)
        ws.project_path = project_path
        if plan.adapters is not None:  # LoRA goes on after any new head, so a new head can be adapted too
            backbone.notices.extend(adapt_workspace(ws))
        return ws

    def __post_init__(self) -> None:
        # The size the module was loaded at: what a plan without input_size means for this workspace.
        self.loaded_input_size: tuple[int, int, int] = tuple(self.backbone.spec.input_size)  # type: ignore[assignment]
        self._default_groups: list[GroupConfig] | None = None

    def reset_derived(self) -> None:
        """Forget what was computed from the tree (after the model changed shape, e.g. adapters went in)."""
        self._default_groups = None
        self._resolution = None
        self.backbone._cost_model = None  # type: ignore[attr-defined]

    def default_groups(self) -> list[GroupConfig]:
        """The stages, or with [train] layer_decay one group per layer (what editing a group's LR makes explicit)."""
        if self.plan.train.layer_decay is not None and self.tree.param_layer:
            from workbench.groups import layer_groups

            return layer_groups(self.tree)
        # The tree never changes while a model is loaded, so neither do its default groups (copies: callers edit them).
        if self._default_groups is None:
            self._default_groups = default_groups(self.tree)
        return copy.deepcopy(self._default_groups)

    def sync_input_size(self) -> bool:
        """Give the model the plan's input size: new output shapes in the tree, the spec updated.

        Returns True when the size changed. Raises PlanError, keeping the old size and shapes,
        when the model cannot run at the new size (wrong channels, a ViT built for one size, a
        head that flattens a fixed feature map).
        """
        import torch

        from workbench.errors import PlanError
        from workbench.layer_tree import record_output_shapes

        wanted = tuple(self.plan.model.input_size or self.loaded_input_size)
        spec = self.backbone.spec
        if wanted == tuple(spec.input_size):
            return False
        shown = "×".join(map(str, wanted))
        try:
            record_output_shapes(self.backbone.module, torch.randn(1, *wanted), self.tree)
        except Exception as exc:  # any module's forward may refuse a size; the message says why
            reason = " ".join(str(exc).split())[:240] or type(exc).__name__
            raise PlanError(f"{spec.architecture} cannot take a {shown} input ({type(exc).__name__}: {reason}); "
                            f"it was loaded at {'×'.join(map(str, spec.input_size))}") from None
        spec.input_size = wanted
        self.backbone._cost_model = None  # type: ignore[attr-defined]  # FLOPs depend on the input size
        return True

    def resolve(self) -> Resolution:
        """Resolve the current plan (cheap: pure Python over the tree's lists)."""
        self._resolution = resolve_plan(self.tree, self.plan, self.default_groups())
        return self._resolution

    def apply(self) -> AppliedPlan:
        return apply_plan(self.backbone.module, self.resolve())

    def take_weights(self, state: "Mapping[str, torch.Tensor]", keep_new: str | None = None) -> list[str]:
        """Start this workspace's module from ``state`` (another build's weights): every tensor whose
        name and shape match is copied; ``keep_new`` is a module path (a new head) left as built.

        Rebuilding from a plan gives the plan's initial weights; after a run was opened they are not
        the ones the user sees, so compare, cut and rebuild start from the run's through this.
        Returns the names of this module's tensors that kept their built values.
        """
        import torch

        from workbench.layer_tree import refresh_bn_untrained

        own = self.backbone.module.state_dict()
        prefix = f"{keep_new}." if keep_new else None
        kept = []
        with torch.no_grad():
            for name, tensor in own.items():
                source = state.get(name)
                if (source is None or source.shape != tensor.shape or source.dtype != tensor.dtype
                        or (prefix is not None and name.startswith(prefix))):
                    kept.append(name)
                    continue
                tensor.copy_(source)
        refresh_bn_untrained(self.backbone.module, self.tree)
        return kept

    def adopt(self, trained: TrainedModel) -> None:
        """Take a run's trained model and its spec (the data's class names) as this workspace's own.

        Training never changes a workspace (it trains a copy); the GUI calls this after a run so
        the layer tree, export and the next run start from the trained weights. The plan is kept.
        """
        from workbench.layer_tree import refresh_bn_untrained

        self.backbone.module = trained.module
        self.backbone.spec = trained.spec
        refresh_bn_untrained(trained.module, self.tree)


def build_tree(backbone: Backbone) -> LayerTree:
    """Layer tree with output shapes from one batch-1 forward pass at the spec's input size."""
    import torch

    spec = backbone.spec
    example = torch.randn(1, *spec.input_size)
    classifiers = spec.extra.get("classifiers") or ([spec.classifier] if spec.classifier else [])
    tree = build_layer_tree(backbone.module, example, model_name=spec.architecture, classifier_paths=classifiers)
    compute_stages(backbone.module, tree)
    return tree


# --- LoRA adapters on a workspace's model -------------------------------------------------
def adapt_workspace(ws: Workspace) -> list[str]:
    """Inject the plan's adapters into the workspace's model and rebuild its tree. Returns notes for the user.

    Draws the adapters' initial values from torch's global generator: seed it first for a reproducible run.
    """
    from workbench.adapters import inject_adapters

    config = ws.plan.adapters
    assert config is not None
    targets = inject_adapters(ws.backbone.module, ws.tree, config, ws.backbone.spec.architecture)
    ws.tree = build_tree(ws.backbone)
    ws.tree.adapter_paths = targets.paths
    ws.reset_derived()
    return targets.notes()


def with_adapters_on(ws: Workspace, modules: list[str], rank: int, alpha: float | None) -> Workspace:
    """A new workspace: ``ws``'s model (a copy, its weights as they are) with LoRA on ``modules`` added to the
    plan's [adapters] (rank and alpha as given). Adapters already there start again from their initial values."""
    current = ws.plan.adapters
    old = list(current.modules) if current is not None else []
    config = AdapterConfig(modules=old + [m for m in modules if m not in old], rank=rank, alpha=alpha,
                           dropout=current.dropout if current is not None else 0.0,
                           max_share=current.max_share if current is not None else None)
    return with_adapter_config(ws, config)


def with_adapter_config(ws: Workspace, config: AdapterConfig | None) -> Workspace:
    """A new workspace: a copy of ``ws``'s model without its adapters, then with ``config``'s (None: none)."""
    from workbench.adapters import without_adapters

    plan = ws.plan.copy()
    plan.adapters = config
    backbone = copy.deepcopy(ws.backbone)
    backbone.module = without_adapters(backbone.module)
    new = Workspace.from_backbone(backbone, plan)
    new.project_path = ws.project_path
    if config is not None:
        backbone.notices.extend(adapt_workspace(new))
    return new
