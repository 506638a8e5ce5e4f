"""Edits to a plan's freezing: ticks on the tree, presets, patterns, types.

Each function returns nothing and edits ``plan.freeze`` in place, keeping the
selector lists minimal (no mark that repeats what its parent already implies).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import PlanError
from workbench.layer_tree import LayerNode, LayerTree
from workbench.plan import FinetunePlan
from workbench.resolve import resolve_plan
from workbench.selectors import SelectorMatcher


def set_frozen(plan: FinetunePlan, tree: LayerTree, path: str, frozen: bool) -> None:
    """Freeze or unfreeze a module's whole subtree (a tick on the tree), or one parameter by name."""
    _materialize_patterns(plan, tree)
    node = tree.find_node(path)
    if node is None:
        param = tree.find_param(path)
        if param is None:
            raise PlanError(f"unknown module path {path!r}")
        _drop(plan, {path})
        if _inherited_frozen(plan, tree, tree.nodes[param.owner], include_self=True) != frozen:
            (plan.freeze.frozen if frozen else plan.freeze.unfrozen).append(path)
        return
    inside = {n.path for n in tree.subtree(node)} | {tree.params[p].name for p in tree.subtree_params(node)}
    _drop(plan, inside)
    if _inherited_frozen(plan, tree, node, include_self=False) != frozen:
        (plan.freeze.frozen if frozen else plan.freeze.unfrozen).append(path)


def plan_at_epoch(plan: FinetunePlan, tree: LayerTree, epoch: int) -> FinetunePlan:
    """A copy of the plan as it stands at the start of ``epoch`` (0-based): scheduled groups unfrozen."""
    current = plan.copy()
    for step in sorted(plan.unfreeze, key=lambda s: s.epoch):
        if step.epoch <= epoch:
            unfreeze_groups(current, tree, step.groups)
    return current


def unfreeze_groups(plan: FinetunePlan, tree: LayerTree, names: list[str]) -> None:
    """Make every parameter the named groups select trainable (deeper frozen marks included)."""
    matcher = SelectorMatcher(tree)
    for name in names:
        group = plan.group(name)
        if group is None:
            raise PlanError(f"[[unfreeze]] names unknown group {name!r}")
        for selector in group.modules:
            nodes, params = matcher.match(selector, f"group {name!r}")
            for n in nodes:
                set_frozen(plan, tree, tree.nodes[n].path, False)
            for p in params:
                set_frozen(plan, tree, tree.params[p].name, False)


def full_finetune(plan: FinetunePlan) -> None:
    plan.freeze.frozen.clear()
    plan.freeze.unfrozen.clear()


def linear_probe(plan: FinetunePlan, tree: LayerTree) -> None:
    """Only the classifier trains."""
    if not tree.classifier_paths:
        raise PlanError("linear probe needs a classifier, and this model has none the workbench can identify")
    plan.freeze.frozen[:] = [""]
    plan.freeze.unfrozen[:] = list(tree.classifier_paths)


def freeze_first_stages(plan: FinetunePlan, tree: LayerTree, count: int) -> None:
    """Freeze the stem and the first ``count`` stages (timm group_matcher stages, or depth blocks)."""
    body = [members for name, members in tree.stages if name != "head"]
    stages_only = len(body) - 1  # body[0] is the stem
    if count < 0 or count > stages_only:
        raise PlanError(f"this model has {stages_only} stages after its stem; cannot freeze the first {count}")
    full_finetune(plan)
    if count == 0:
        return
    members = [p for stage in body[:count + 1] for p in stage]
    plan.freeze.frozen[:] = tree.cover_paths(members)


def freeze_up_to(plan: FinetunePlan, tree: LayerTree, path: str) -> None:
    """Freeze every parameter that comes before this module in model order, and the module itself."""
    node = tree.find_node(path)
    if node is None:
        raise PlanError(f"unknown module path {path!r}")
    under = tree.subtree_params(node)
    if not under:
        earlier = [n for n in tree.nodes[:node.index] if n.own_params]
        last = earlier[-1].own_params[-1] if earlier else -1
    else:
        last = max(under)
    for p in tree.cover_paths(list(range(last + 1))):
        set_frozen(plan, tree, p, True)


def freeze_matching(plan: FinetunePlan, tree: LayerTree, pattern: str, regex: bool = False) -> int:
    """Freeze every module whose path matches a glob (or a regex); returns how many matched."""
    selector = f"re:{pattern}" if regex else pattern
    nodes, params = SelectorMatcher(tree).match(selector, "freeze pattern")
    if not nodes and not params:
        raise PlanError(f"pattern {pattern!r} matches no module")
    if selector not in plan.freeze.frozen:
        plan.freeze.frozen.append(selector)
    return len(nodes) + len(params)


@dataclass(frozen=True)
class SelectorMatch:
    """What a selector names: modules, parameter tensors, and the parameters they hold."""

    selector: str
    modules: int  # modules named directly (their submodules follow them)
    tensors: int  # parameter tensors covered (under the modules, or named)
    params: int  # elements in those tensors

    def describe(self) -> str:
        modules = f"{self.modules:,} module{'s' if self.modules != 1 else ''}"
        return f"{modules}, {self.tensors:,} parameter tensor{'s' if self.tensors != 1 else ''} ({self.params:,} parameters)"


def match_selector(tree: LayerTree, selector: str) -> SelectorMatch:
    """Count what ``selector`` (a path, glob, ``re:`` regex or ``type:`` class) names in the tree.

    Raises PlanError for an empty selector, a bad regular expression or an unknown exact path.
    """
    selector = selector.strip()
    if not selector:
        raise PlanError("type a selector: a module path, a glob (layer*.bn?), re:REGEX or type:CLASS")
    if selector == "re:" or selector == "type:":
        raise PlanError(f"{selector!r} needs something after the colon (e.g. re:^blocks\\.[0-2]$, type:BatchNorm2d)")
    nodes, params = SelectorMatcher(tree).match(selector, "the selector")
    covered = {p for n in nodes for p in tree.subtree_params(tree.nodes[n])} | set(params)
    return SelectorMatch(selector, len(nodes), len(covered), sum(tree.params[p].numel for p in covered))


def freeze_selector(plan: FinetunePlan, tree: LayerTree, selector: str, frozen: bool) -> SelectorMatch:
    """Freeze (or unfreeze) everything a selector names, keeping the selector itself in the plan.

    The selector lands in ``[freeze] frozen`` (or ``unfrozen``) as typed, so the project file says
    what the user meant; a selector that matches nothing is refused.
    """
    match = match_selector(tree, selector)
    if not match.modules and not match.tensors:
        hint = _type_hint(tree, match.selector)
        raise PlanError(f"{match.selector!r} matches no module or parameter{hint}")
    add, other = (plan.freeze.frozen, plan.freeze.unfrozen) if frozen else (plan.freeze.unfrozen, plan.freeze.frozen)
    other[:] = [s for s in other if s != match.selector]
    if match.selector not in add:
        add.append(match.selector)
    return match


def _type_hint(tree: LayerTree, selector: str) -> str:
    import difflib

    if not selector.startswith("type:"):
        return ""
    types = sorted({n.type_name for n in tree.nodes})
    close = difflib.get_close_matches(selector[5:], types, n=3, cutoff=0.5)
    return f" (types in this model include {', '.join('type:' + t for t in close)})" if close else ""


def freeze_type(plan: FinetunePlan, tree: LayerTree, type_name: str) -> int:
    """Freeze every module of one class (e.g. ``BatchNorm2d``); returns how many."""
    count = sum(1 for n in tree.nodes if n.type_name == type_name)
    if not count:
        raise PlanError(f"this model has no module of type {type_name!r}")
    selector = f"type:{type_name}"
    if selector not in plan.freeze.frozen:
        plan.freeze.frozen.append(selector)
    return count


def _drop(plan: FinetunePlan, paths: set[str]) -> None:
    plan.freeze.frozen[:] = [s for s in plan.freeze.frozen if s not in paths]
    plan.freeze.unfrozen[:] = [s for s in plan.freeze.unfrozen if s not in paths]


def _inherited_frozen(plan: FinetunePlan, tree: LayerTree, node: LayerNode, include_self: bool) -> bool:
    """Whether a node is frozen by marks on its ancestors (and itself, if asked)."""
    frozen, unfrozen = set(plan.freeze.frozen), set(plan.freeze.unfrozen)
    chain = ([node] if include_self else []) + tree.ancestors(node)
    for n in chain:
        if n.path in unfrozen:
            return False
        if n.path in frozen:
            return True
    return False


def _materialize_patterns(plan: FinetunePlan, tree: LayerTree) -> None:
    """Replace glob/regex/type selectors by the exact paths they freeze, so ticks edit plain paths."""
    matcher = SelectorMatcher(tree)
    if not any(matcher.is_pattern(s) for s in plan.freeze.frozen + plan.freeze.unfrozen):
        return
    resolution = resolve_plan(tree, _freeze_only(plan))
    frozen = [p.index for p in tree.params if not resolution.param_trainable[p.index]]
    frozen_nodes = [n.path for n in tree.nodes if resolution.node_frozen[n.index] and not n.param_count]
    plan.freeze.frozen[:] = tree.cover_paths(frozen) + [p for p in frozen_nodes if p]
    plan.freeze.unfrozen[:] = []


def _freeze_only(plan: FinetunePlan) -> FinetunePlan:
    from dataclasses import replace

    return replace(plan, groups=[], unfreeze=[], freeze=replace(plan.freeze, batchnorm="freeze"))


def bitfit(plan: FinetunePlan, tree: LayerTree, norms: bool = True) -> list[str]:
    """BitFit (Ben Zaken et al.): only biases (``param:bias``), the head and, with ``norms``, the
    normalisation layers' scales train. Returns notes for the user; refuses a plan that would train the head only.

    Normalisation modules stay frozen as modules, so under ``batchnorm = "freeze"`` their statistics do not move.
    """
    if not tree.classifier_paths:
        raise PlanError("BitFit needs a classifier, and this model has none the workbench can identify")
    head = {p for path in tree.classifier_paths for p in tree.subtree_params(tree.node(path))}
    is_norm = ["Norm" in n.type_name for n in tree.nodes]
    biases = [p for p in tree.params if p.name.rpartition(".")[2] == "bias" and p.index not in head]
    layer_biases = [p for p in biases if not is_norm[p.owner]]
    layers = [n for n in tree.nodes if n.type_name.startswith(("Conv", "Linear")) and n.own_params
              and not set(n.own_params) & head]
    notes = []
    if layers and not layer_biases:
        if not norms and not biases:
            raise PlanError(f"BitFit would train the head only: none of this model's {len(layers)} convolution/linear "
                            "layers has a bias and the normalisation layers are left out; allow norms, or use a probe")
        notes.append(f"BitFit: none of this model's {len(layers)} convolution/linear layers has a bias (they feed "
                     "normalisation layers), so BitFit trains the normalisation layers' "
                     + ("biases and scales" if norms else "biases") + " and the head")
    plan.freeze.frozen[:] = [""]
    plan.freeze.unfrozen[:] = ["param:bias", *tree.classifier_paths]
    if norms:
        kinds = sorted({tree.nodes[p.owner].type_name for p in tree.params
                        if is_norm[p.owner] and p.name.rpartition(".")[2] == "weight"})
        plan.freeze.unfrozen[1:1] = [f"param:{kind}.weight" for kind in kinds]
    return notes
