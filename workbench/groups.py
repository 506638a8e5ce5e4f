"""Default parameter groups and the discriminative learning-rate preset.

Groups follow timm's contract: ``model.group_matcher(coarse=True)`` when the model has
one (stem, each stage, head), else contiguous blocks by depth (ONNX imports). The
classifier always ends up in the last group, named ``head``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from workbench.layer_tree import LayerTree
from workbench.plan import FinetunePlan, GroupConfig

if TYPE_CHECKING:
    import torch.nn as nn

DEFAULT_DEPTH_GROUPS = 5


def compute_stages(module: "nn.Module", tree: LayerTree) -> None:
    """Fill ``tree.stages`` (ordered (name, parameter indices)) and ``tree.stage_source``."""
    stages = _timm_stages(module, tree)
    if stages:
        tree.stages, tree.stage_source = stages, "timm group_matcher"
    else:
        tree.stages, tree.stage_source = _depth_stages(tree), "depth"
    tree.param_layer, tree.layer_source = _layers(module, tree)


def _layers(module: "nn.Module", tree: LayerTree) -> tuple[list[int], str]:
    """Each parameter's layer for layer-wise LR decay: timm's own assignment (the one its
    ``param_groups_layer_decay`` uses: ``group_matcher(coarse=False)``, unmatched names with the head),
    else the stages by depth."""
    matcher = getattr(module, "group_matcher", None)
    if callable(matcher):
        try:
            from timm.models import group_parameters

            layer_map = group_parameters(module, matcher(coarse=False), reverse=True)
            top = max(layer_map.values(), default=0)
            return [layer_map.get(p.name, top) for p in tree.params], "timm group_matcher(coarse=False)"
        except (KeyError, ValueError, TypeError, AttributeError, IndexError):
            pass  # the coarse stages already warned; fall back to them
    layer = [0] * len(tree.params)
    for i, (_, members) in enumerate(tree.stages):
        for p in members:
            layer[p] = i
    return layer, f"{tree.stage_source} stages"


def layer_groups(tree: LayerTree) -> list[GroupConfig]:
    """One group per LR-decay layer (what a plan without [[groups]] trains with under [train] layer_decay)."""
    by_layer: dict[int, list[int]] = {}
    for p, layer in enumerate(tree.param_layer):
        by_layer.setdefault(layer, []).append(p)
    top = max(by_layer, default=0)
    classifier = {p for path in tree.classifier_paths for p in tree.subtree_params(tree.node(path))}
    named = [("head" if i == top and classifier.issubset(by_layer[i]) else _stage_name(tree, by_layer[i], position),
              by_layer[i]) for position, i in enumerate(sorted(by_layer))]
    return [GroupConfig(name, tree.cover_paths(members)) for name, members in _unique_names(named)]


def default_groups(tree: LayerTree) -> list[GroupConfig]:
    """One group per stage (LR and weight decay left to the [train] defaults)."""
    return [GroupConfig(name, tree.cover_paths(members)) for name, members in tree.stages]


def discriminative(groups: list[GroupConfig], base_lr: float, factor: float) -> list[GroupConfig]:
    """Last group at ``base_lr``; each earlier group at the next one's LR times ``factor``."""
    if base_lr <= 0 or factor <= 0:
        from workbench.errors import PlanError

        raise PlanError(f"discriminative LRs need base_lr > 0 and factor > 0 (got {base_lr:g}, {factor:g})")
    last = len(groups) - 1
    return [GroupConfig(g.name, list(g.modules), base_lr * factor ** (last - i), g.weight_decay)
            for i, g in enumerate(groups)]


def _timm_stages(module: "nn.Module", tree: LayerTree) -> list[tuple[str, list[int]]]:
    matcher = getattr(module, "group_matcher", None)
    if not callable(matcher):
        return []
    try:
        from timm.models import group_parameters

        by_ordinal = group_parameters(module, matcher(coarse=True))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # a model whose matcher does not fit its own parameters: say so, then fall back to depth
        warnings.warn(f"{type(module).__name__}: timm's group_matcher does not fit its parameters "
                      f"({type(exc).__name__}: {exc}); using depth groups", stacklevel=2)
        return []
    index = {p.name: p.index for p in tree.params}
    classifier = set()
    for path in tree.classifier_paths:
        classifier.update(tree.subtree_params(tree.node(path)))
    stages: list[list[int]] = []
    for ordinal in sorted(by_ordinal):
        members = [index[n] for n in by_ordinal[ordinal] if n in index and index[n] not in classifier]
        if members:
            stages.append(members)
    covered = {p for s in stages for p in s} | classifier
    missing = [p.index for p in tree.params if p.index not in covered]
    if missing:  # timm #2712: a token its matcher misses; keep it rather than lose it
        stages.insert(0, missing) if not stages else stages[0].extend(missing)
    named = [(_stage_name(tree, members, i), members) for i, members in enumerate(stages)]
    if classifier:
        named.append(("head", sorted(classifier)))
    return _unique_names(named)


def _depth_stages(tree: LayerTree) -> list[tuple[str, list[int]]]:
    """Contiguous runs of parameter-owning modules in model order; the classifier is the head."""
    classifier = set()
    for path in tree.classifier_paths:
        classifier.update(tree.subtree_params(tree.node(path)))
    owners: list[list[int]] = []
    for node in tree.nodes:
        own = [p for p in node.own_params if p not in classifier]
        if own:
            owners.append(own)
    if not classifier and owners:
        classifier = set(owners.pop())
    count = min(DEFAULT_DEPTH_GROUPS, len(owners))
    stages: list[tuple[str, list[int]]] = []
    for i in range(count):
        chunk = owners[i * len(owners) // count:(i + 1) * len(owners) // count]
        stages.append((f"depth{i}", [p for own in chunk for p in own]))
    if classifier:
        stages.append(("head", sorted(classifier)))
    return stages


def _stage_name(tree: LayerTree, members: list[int], position: int) -> str:
    cover = tree.cover_paths(members)
    if len(cover) == 1:
        return cover[0]
    if position == 0:
        return "stem"
    tops = {path.split(".")[0] for path in cover}
    return f"{tops.pop()}{position}" if len(tops) == 1 else f"group{position}"


def _unique_names(named: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
    seen: dict[str, int] = {}
    out = []
    for name, members in named:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append((name, members))
    return out


def assign_to_group(plan: FinetunePlan, tree: LayerTree, path: str, group_name: str,
                    defaults: list[GroupConfig]) -> None:
    """Move a module's subtree (or one parameter) into ``group_name``, keeping groups disjoint.

    The default groups become explicit first; a broader group that contained the path is
    split around it (its remaining members written as the fewest covering paths); the
    target group is created when it does not exist; groups left empty are dropped.
    """
    from workbench.errors import PlanError
    from workbench.selectors import SelectorMatcher

    node = tree.find_node(path)
    param = tree.find_param(path) if node is None else None
    if node is None and param is None:
        raise PlanError(f"unknown module path {path!r}")
    if node is not None:
        moving = set(tree.subtree_params(node))
    else:
        assert param is not None
        moving = {param.index}
    if not moving:
        raise PlanError(f"{path or 'the model'} has no parameters to put in a group")
    if not plan.groups:
        plan.groups = [GroupConfig(g.name, list(g.modules), g.lr, g.weight_decay) for g in defaults]
    matcher = SelectorMatcher(tree)

    def claimed(group: GroupConfig) -> set[int]:
        out: set[int] = set()
        for selector in group.modules:
            nodes, params = matcher.match(selector, f"group {group.name!r}")
            out.update(p for n in nodes for p in tree.subtree_params(tree.nodes[n]))
            out.update(params)
        return out

    target = next((g for g in plan.groups if g.name == group_name), None)
    for group in plan.groups:
        if group is target:
            continue
        members = claimed(group)
        if members & moving:
            group.modules = tree.cover_paths(sorted(members - moving))
    if target is None:
        target = GroupConfig(group_name, [])
        plan.groups.append(target)
    target.modules = tree.cover_paths(sorted(claimed(target) | moving))
    plan.groups = [g for g in plan.groups if g.modules]
