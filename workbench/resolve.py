"""Resolving a FinetunePlan against a LayerTree: who trains, in which group, at which LR.

Pure Python over the tree's lists (no torch), linear in nodes + parameters, so the GUI
can re-run it on every tick. ``workbench.apply`` turns the result into
``requires_grad`` flags, BatchNorm modes and optimizer parameter groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.errors import PlanError
from workbench.layer_tree import LayerTree
from workbench.plan import FinetunePlan, GroupConfig
from workbench.problems import WARNING, Problem
from workbench.selectors import SelectorMatcher

TRAINABLE, FROZEN, PARTIAL = "trainable", "frozen", "partial"


# Which control a resolver warning is about: the window shows it there (tab or panel name).
_GROUP_WARNINGS = {"param-in-no-group", "param-in-two-groups", "group-matches-nothing", "frozen-group-with-lr",
                   "trainable-group-lr-zero", "unfreeze-already-trainable"}


def _warning(code: str, message: str) -> Problem:
    return Problem(code, message, WARNING, "groups" if code in _GROUP_WARNINGS else "layers")


@dataclass
class ResolvedGroup:
    name: str
    lr: float
    weight_decay: float
    params: list[int] = field(default_factory=list)  # trainable parameter indices (optimizer members)
    claimed: list[int] = field(default_factory=list)  # every parameter the group selects, frozen ones too
    numel: int = 0
    auto: bool = False  # made up by the resolver (ungrouped parameters), not in the plan


@dataclass
class Resolution:
    """The plan applied to the tree, as plain lists indexed like ``tree.params`` / ``tree.nodes``."""

    tree: LayerTree
    param_trainable: list[bool]
    param_group: list[int | None]  # optimizer group of each trainable parameter
    param_claim: list[int | None]  # group that claims each parameter (frozen ones too)
    node_trainable: list[int]  # trainable parameter count per subtree
    node_state: list[str]
    node_frozen: list[bool]  # the module's own freeze mark (inherited), whatever its params
    bn_eval: list[int]  # BatchNorm nodes to keep in eval mode
    groups: list[ResolvedGroup]
    warnings: list[Problem]
    _node_groups: list[str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def total_params(self) -> int:
        return self.tree.total_params

    @property
    def trainable_params(self) -> int:
        return self.node_trainable[0]

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    def node_group(self, index: int) -> str | None:
        """The group name when every parameter under the node is claimed by one group."""
        node = self.tree.nodes[index]
        claims = {self.param_claim[p] for n in self.tree.subtree(node) for p in n.own_params}
        if len(claims) == 1:
            only = claims.pop()
            return None if only is None else self.groups[only].name
        return None

    def node_groups(self) -> list[str | None]:
        """``node_group`` of every node, computed in one pass (children before parents) and kept."""
        if self._node_groups is None:
            empty, mixed, unclaimed = -3, -2, -1
            nodes = self.tree.nodes
            claim = [empty] * len(nodes)
            for node in reversed(nodes):
                seen = {unclaimed if (c := self.param_claim[p]) is None else c for p in node.own_params}
                seen.update(claim[c] for c in node.children if claim[c] != empty)
                claim[node.index] = empty if not seen else (seen.pop() if len(seen) == 1 else mixed)
            self._node_groups = [self.groups[c].name if c >= 0 else None for c in claim]
        return self._node_groups

    def summary(self) -> str:
        total, trainable = self.total_params, self.trainable_params
        share = 100.0 * (total - trainable) / total if total else 0.0
        return f"{trainable:,} of {total:,} parameters trainable ({total - trainable:,} frozen, {percent(share)} frozen)"


def resolve_plan(tree: LayerTree, plan: FinetunePlan, default_groups: list[GroupConfig] | None = None) -> Resolution:
    """Resolve freezing, BatchNorm policy and groups. Raises PlanError for unknown paths or bad values.

    ``default_groups`` are used when the plan has none (timm group_matcher or depth
    groups, from ``workbench.groups.default_groups``).
    """
    matcher = SelectorMatcher(tree)
    warnings: list[Problem] = []
    nodes, params = tree.nodes, tree.params

    # 1. Freeze marks per node and per parameter: +1 unfrozen, -1 frozen; unfrozen wins ties.
    node_mark: dict[int, bool] = {}
    param_mark: dict[int, bool] = {}
    for key, frozen in (("frozen", True), ("unfrozen", False)):
        for selector in getattr(plan.freeze, key):
            hit_nodes, hit_params = matcher.match(selector, f"[freeze] {key}")
            if not hit_nodes and not hit_params:
                warnings.append(_warning("pattern-matches-nothing", f"[freeze] {key} pattern {selector!r} matches no module"))
            for i in hit_nodes:
                if not (frozen and node_mark.get(i) is False):
                    node_mark[i] = frozen
            for i in hit_params:
                if not (frozen and param_mark.get(i) is False):
                    param_mark[i] = frozen

    node_frozen = [False] * len(nodes)
    for node in nodes:  # pre-order: the parent is settled before its children
        inherited = node_frozen[node.parent] if node.parent is not None else False
        node_frozen[node.index] = node_mark.get(node.index, inherited)

    train_bn = plan.freeze.batchnorm == "train"
    param_trainable = [False] * len(params)
    for p in params:
        owner = nodes[p.owner]
        if p.index in param_mark:
            frozen = param_mark[p.index]
        elif train_bn and owner.is_batchnorm:
            frozen = False  # fastai's train_bn: BatchNorm keeps training inside frozen blocks
        else:
            frozen = node_frozen[owner.index]
        param_trainable[p.index] = not frozen
    if tree.adapter_paths:  # [adapters]: the adapter trains, the weight it adapts never does
        from workbench.adapters import param_roles

        for index, trains in param_roles(tree).items():
            param_trainable[index] = trains

    bn_eval = []
    all_eval = plan.freeze.batchnorm == "eval"  # Keras' advice: BatchNorm in inference mode even where it trains
    if not train_bn:
        for node in nodes:
            if node.is_batchnorm:
                own = node.own_params
                if all_eval or node_frozen[node.index] or (own and not any(param_trainable[p] for p in own)):
                    bn_eval.append(node.index)

    # 2. Tri-state and counts, children before parents.
    node_trainable = [0] * len(nodes)
    node_state = [TRAINABLE] * len(nodes)
    has_frozen = [False] * len(nodes)
    for node in reversed(nodes):
        count = sum(params[p].numel for p in node.own_params if param_trainable[p])
        frozen_here = any(not param_trainable[p] for p in node.own_params)
        for c in node.children:
            count += node_trainable[c]
            frozen_here = frozen_here or has_frozen[c]
        node_trainable[node.index] = count
        has_frozen[node.index] = frozen_here
        if node.param_count == 0:
            node_state[node.index] = FROZEN if node_frozen[node.index] else TRAINABLE
        elif count == node.param_count:
            node_state[node.index] = TRAINABLE
        elif count == 0:
            node_state[node.index] = FROZEN
        else:
            node_state[node.index] = PARTIAL

    # 3. Groups.
    decay = plan.train.layer_decay
    if decay is not None and not plan.groups and tree.param_layer:
        from workbench.groups import layer_groups

        default_groups = layer_groups(tree)  # one group per layer, so each layer can have its own LR
    configs = plan.groups if plan.groups else (default_groups or [])
    explicit_groups = bool(plan.groups)
    groups = [ResolvedGroup(g.name,
                            g.lr if g.lr is not None else plan.train.lr,
                            g.weight_decay if g.weight_decay is not None else plan.train.weight_decay)
              for g in configs]
    names = [g.name for g in configs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise PlanError(f"two parameter groups are named {dup!r}")

    # Specificity of each group's claim on each parameter: depth of the matching selector.
    claims: list[list[tuple[int, int]]] = [[] for _ in params]  # per param: (specificity, group)
    for gi, config in enumerate(configs):
        hit_any = False
        for selector in config.modules:
            hit_nodes, hit_params = matcher.match(selector, f"group {config.name!r}")
            for ni in hit_nodes:
                node = nodes[ni]
                spec = node.depth * 2
                for n in tree.subtree(node):
                    for owned in n.own_params:
                        claims[owned].append((spec, gi))
                        hit_any = True
            for pi in hit_params:
                claims[pi].append((nodes[params[pi].owner].depth * 2 + 1, gi))
                hit_any = True
        if not hit_any:
            warnings.append(_warning("group-matches-nothing", f"group {config.name!r} selects no parameters"))

    param_claim: list[int | None] = [None] * len(params)
    overlaps: dict[tuple[int, ...], list[str]] = {}
    for p in params:
        options = claims[p.index]
        if not options:
            continue
        best = max(options, key=lambda o: (o[0], -o[1]))
        param_claim[p.index] = best[1]
        distinct = sorted({g for _, g in options})
        if len(distinct) > 1:
            overlaps.setdefault(tuple(distinct), []).append(p.name)
    for group_ids, names_ in overlaps.items():
        group_names = " and ".join(repr(configs[g].name) for g in group_ids)
        warnings.append(_warning("param-in-two-groups",
                                 f"{len(names_)} parameter(s) ({_few(names_)}) are selected by groups {group_names}; "
                                 "each goes to the most specific match"))

    ungrouped = [p.index for p in params if param_trainable[p.index] and param_claim[p.index] is None]
    if ungrouped:
        auto = ResolvedGroup("ungrouped", plan.train.lr, plan.train.weight_decay, auto=True)
        groups.append(auto)
        for index in ungrouped:
            param_claim[index] = len(groups) - 1
        if explicit_groups or configs:
            warnings.append(_warning("param-in-no-group",
                                     f"{len(ungrouped)} trainable parameter(s) ({_few([params[p].name for p in ungrouped])}) "
                                     f"are in no group; they train in group 'ungrouped' at lr={plan.train.lr:g}"))

    param_group: list[int | None] = [None] * len(params)
    for p in params:
        claim = param_claim[p.index]
        if claim is None:
            continue
        groups[claim].claimed.append(p.index)
        if param_trainable[p.index]:
            param_group[p.index] = claim
            groups[claim].params.append(p.index)
            groups[claim].numel += p.numel

    if decay is not None and tree.param_layer:
        # Layer-wise LR decay: lr × decay^(layers from the head); a group's own lr wins (it is what the user typed).
        # A group spanning several layers takes its first (lowest) layer's LR.
        top = max(tree.param_layer)
        for gi, config in enumerate(configs):
            if config.lr is None and groups[gi].claimed:
                groups[gi].lr = plan.train.lr * decay ** (top - min(tree.param_layer[p] for p in groups[gi].claimed))
    scheduled = {name for step in plan.unfreeze for name in step.groups}
    for step in plan.unfreeze:
        for name in step.groups:
            if name not in names:
                raise PlanError(f"[[unfreeze]] at epoch {step.epoch} names unknown group {name!r} (groups: {', '.join(names) or 'none'})")
            if step.epoch < 0:
                raise PlanError(f"[[unfreeze]] epoch must be >= 0, not {step.epoch}")
        if step.lr is not None and any(o.epoch == step.epoch and o.lr not in (None, step.lr) for o in plan.unfreeze):
            raise PlanError(f"[[unfreeze]] steps at epoch {step.epoch} set different LRs "
                            f"({', '.join(f'{o.lr:g}' for o in plan.unfreeze if o.epoch == step.epoch and o.lr)}): "
                            "give the LR once")
    for gi, config in enumerate(configs):
        group = groups[gi]
        if group.claimed and not group.params and config.name not in scheduled and (config.lr is not None and explicit_groups):
            warnings.append(_warning("frozen-group-with-lr",
                                     f"group {config.name!r} has lr={config.lr:g} but all its parameters are frozen "
                                     "and no [[unfreeze]] step unfreezes it: the LR has no effect"))
        lr = config.lr if config.lr is not None else plan.train.lr
        if (group.params or config.name in scheduled) and lr == 0:
            warnings.append(_warning("trainable-group-lr-zero",
                                     f"group {config.name!r} has {group.numel:,} trainable parameters but lr = 0: "
                                     "they get gradients and optimizer state yet never change (freeze them instead, "
                                     "or give the group an LR)"))
        if group.claimed and len(group.params) == len(group.claimed) and config.name in scheduled:
            first = min(s.epoch for s in plan.unfreeze if config.name in s.groups)
            warnings.append(_warning("unfreeze-already-trainable",
                                     f"group {config.name!r} is scheduled to unfreeze at epoch {first} but is already "
                                     "fully trainable: the step has no effect"))
    if tree.bn_untrained and bn_eval and not train_bn:
        warnings.append(_warning("batchnorm-frozen-untrained",
                                 f"{len(bn_eval)} BatchNorm layer(s) are frozen (batchnorm = {plan.freeze.batchnorm!r}) "
                                 "but hold untrained statistics (running mean 0, variance 1): they normalise nothing. "
                                 "Use pretrained weights, or batchnorm = \"train\""))
    if tree.adapter_paths and plan.train.cache_features is True:
        warnings.append(_warning("adapters-end-cached-trunk",
                                 f"cache_features = true with [adapters]: the feature cache can hold only the layers "
                                 f"before the first adapter ({tree.adapter_paths[0]}); adapters early in the model "
                                 "leave little or nothing to cache"))
    if tree.total_params and node_trainable[0] == 0 and not plan.unfreeze:
        warnings.append(_warning("nothing-trainable", "every parameter is frozen: training would change nothing"))

    return Resolution(tree, param_trainable, param_group, param_claim, node_trainable, node_state,
                      node_frozen, bn_eval, groups, warnings)


def percent(value: float) -> str:
    """A percentage that never rounds a partial share to 0% or 100%."""
    text = f"{value:.0f}%"
    if text in ("0%", "100%") and 0.0 < value < 100.0:
        digits = 1
        while digits < 6:
            text = f"{value:.{digits}f}%"
            if text not in (f"{0:.{digits}f}%", f"{100:.{digits}f}%"):
                break
            digits += 1
    return text


def _few(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … {len(names) - limit} more" if len(names) > limit else "")

