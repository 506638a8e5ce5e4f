"""What a plan costs before it trains: gradient and optimizer-state bytes, step compute, ratios to full fine-tuning.

``measure_costs`` runs once per loaded model (one batch-1 forward under
``torch.utils.flop_counter.FlopCounterMode`` with hooks that attribute FLOPs to
modules). ``plan_cost`` then only sums plain lists, so the GUI can call it on every tick.

Step compute model: every module runs forward (F); backward costs 2F for a module
whose own weights train (input gradient + weight gradient), F for a frozen module that
gradients still pass through (input gradient only), and 0 for the frozen prefix that
runs before the first trainable module in forward order. Full fine-tuning is 3F overall.
With the feature cache, epochs 2+ skip the frozen prefix entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.layer_tree import LayerTree

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from workbench.plan import TrainConfig
    from workbench.resolve import Resolution


@dataclass
class CostModel:
    """Per-module numbers measured once: exclusive forward FLOPs (batch 1) in first-call order."""

    tree: LayerTree
    node_flops: list[int]  # exclusive forward FLOPs per tree node (0 for nodes never called)
    order: list[int]  # nodes with FLOPs or own parameters, in the order their forward first ran
    param_elem_bytes: list[int]  # bytes per element of each tree parameter
    input_size: tuple[int, ...] = ()

    @property
    def forward_flops(self) -> int:
        return sum(self.node_flops)


@dataclass(frozen=True)
class PlanCost:
    """The cost of one plan. FLOPs are per image."""

    trainable_params: int
    total_params: int
    grad_bytes: int
    optimizer_state_bytes: int
    full_grad_bytes: int
    full_optimizer_state_bytes: int
    forward_flops: int
    backward_flops: int
    full_step_flops: int
    cached_step_flops: int | None  # epochs 2+ with the trunk's features cached; None without a frozen prefix
    optimizer: str
    states_per_param: int

    @property
    def step_flops(self) -> int:
        return self.forward_flops + self.backward_flops

    @property
    def step_ratio(self) -> float:
        return self.step_flops / self.full_step_flops if self.full_step_flops else 1.0

    @property
    def memory_ratio(self) -> float:
        """(gradients + optimizer state) relative to full fine-tuning."""
        full = self.full_grad_bytes + self.full_optimizer_state_bytes
        return (self.grad_bytes + self.optimizer_state_bytes) / full if full else 1.0

    @property
    def optimizer_ratio(self) -> float:
        full = self.full_optimizer_state_bytes
        if full:
            return self.optimizer_state_bytes / full
        return self.grad_bytes / self.full_grad_bytes if self.full_grad_bytes else 1.0

    @property
    def cached_ratio(self) -> float | None:
        if self.cached_step_flops is None or not self.full_step_flops:
            return None
        return self.cached_step_flops / self.full_step_flops

    def sentence(self) -> str:
        text = (f"this plan: {_ratio(self.step_ratio)} the step cost and {_ratio(self.optimizer_ratio)} the "
                f"optimizer memory of full fine-tuning")
        if self.cached_ratio is not None:
            text += f"; with the feature cache, epochs 2+ ≈ {_ratio(self.cached_ratio, suffix='×')}"
        return text

    def short(self) -> str:
        """One line for the GUI's summary bar."""
        return (f"grads + {self.optimizer} state {human_bytes(self.grad_bytes + self.optimizer_state_bytes)}; "
                f"{self.sentence()}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer, "states_per_param": self.states_per_param,
            "trainable_params": self.trainable_params, "total_params": self.total_params,
            "grad_bytes": self.grad_bytes, "optimizer_state_bytes": self.optimizer_state_bytes,
            "full_grad_bytes": self.full_grad_bytes, "full_optimizer_state_bytes": self.full_optimizer_state_bytes,
            "forward_flops": self.forward_flops, "backward_flops": self.backward_flops,
            "step_flops": self.step_flops, "full_step_flops": self.full_step_flops,
            "cached_step_flops": self.cached_step_flops,
            "step_ratio": round(self.step_ratio, 6), "optimizer_ratio": round(self.optimizer_ratio, 6),
            "memory_ratio": round(self.memory_ratio, 6),
            "cached_ratio": None if self.cached_ratio is None else round(self.cached_ratio, 6),
            "flops_per": "image", "sentence": self.sentence(),
        }


def _ratio(value: float, suffix: str = "×") -> str:
    return f"{value:.2f}{suffix}" if value >= 0.01 or value == 0 else f"{value:.1g}{suffix}"


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def states_per_param(optimizer: str, momentum: float) -> int:
    """AdamW keeps exp_avg and exp_avg_sq; SGD keeps a momentum buffer only when momentum > 0."""
    if optimizer == "adamw":
        return 2
    if optimizer == "sgd":
        return 1 if momentum > 0 else 0
    raise ValueError(f"unknown optimizer {optimizer!r}")


def measure_costs(module: "nn.Module", tree: LayerTree, example_input: "torch.Tensor") -> CostModel:
    """One batch-1 forward (eval mode, no grad) counting FLOPs per module; weights and modes are untouched."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    index_of: dict[int, int] = {}
    for path, mod in module.named_modules():
        node = tree.find_node(path)
        if node is not None:
            index_of.setdefault(id(mod), node.index)
    inclusive = [0] * len(tree.nodes)
    order: list[int] = []
    seen: set[int] = set()
    stack: list[int] = []
    counter = FlopCounterMode(display=False)

    def pre(mod: Any, _inputs: Any) -> None:
        index = index_of.get(id(mod))
        if index is None:
            return
        if index not in seen:
            seen.add(index)
            order.append(index)
        stack.append(counter.get_total_flops())

    def post(mod: Any, _inputs: Any, _output: Any) -> None:
        if id(mod) in index_of and stack:
            inclusive[index_of[id(mod)]] += counter.get_total_flops() - stack.pop()

    handles = []
    for mod in module.modules():
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad(), counter:
            module(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        for mod, training in modes:
            mod.training = training
    exclusive = list(inclusive)
    for node in tree.nodes:
        for child in node.children:
            exclusive[node.index] -= inclusive[child]
    exclusive = [max(0, v) for v in exclusive]  # a child called outside its parent's forward
    keep = [i for i in order if exclusive[i] or tree.nodes[i].own_params]
    # Parameters of modules that never ran (unused heads) come last: they never stop the prefix early.
    keep += [n.index for n in tree.nodes if n.own_params and n.index not in seen]
    elem = {name: p.element_size() for name, p in module.named_parameters()}
    param_bytes = [elem.get(p.name, 4) for p in tree.params]
    return CostModel(tree, exclusive, keep, param_bytes, tuple(example_input.shape[1:]))


def plan_cost(model: CostModel, resolution: "Resolution", train: "TrainConfig") -> PlanCost:
    """Sum the precomputed numbers for this resolution: linear in nodes + parameters, no torch."""
    tree = model.tree
    trainable = resolution.param_trainable
    per = states_per_param(train.optimizer, train.momentum)
    grad = full_grad = 0
    for p, info in enumerate(tree.params):
        size = info.numel * model.param_elem_bytes[p]
        full_grad += size
        if trainable[p]:
            grad += size
    forward = model.forward_flops
    backward = 0
    prefix_flops = 0
    in_prefix = True
    for index in model.order:
        node = tree.nodes[index]
        trains = any(trainable[p] for p in node.own_params)
        if trains:
            in_prefix = False
        flops = model.node_flops[index]
        if in_prefix:
            prefix_flops += flops
            continue
        backward += 2 * flops if trains else flops
    if in_prefix:  # nothing trains at all
        backward = 0
    cached = None
    if prefix_flops and not in_prefix:
        cached = forward - prefix_flops + backward
    return PlanCost(
        trainable_params=resolution.trainable_params, total_params=resolution.total_params,
        grad_bytes=grad, optimizer_state_bytes=per * grad,
        full_grad_bytes=full_grad, full_optimizer_state_bytes=per * full_grad,
        forward_flops=forward, backward_flops=backward, full_step_flops=3 * forward,
        cached_step_flops=cached, optimizer=train.optimizer, states_per_param=per)


def workspace_cost_model(ws: Any) -> CostModel:
    """The cost model of a Workspace, measured on first use and kept on its backbone."""
    import torch

    cached = getattr(ws.backbone, "_cost_model", None)
    if cached is not None and cached.tree is ws.tree:
        return cached
    example = torch.randn(1, *ws.backbone.spec.input_size)
    model = measure_costs(ws.backbone.module, ws.tree, example)
    ws.backbone._cost_model = model
    return model
