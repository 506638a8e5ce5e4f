"""A plan after a cut: its references to the modules the cut removed, rewritten or dropped with a notice.

Cutting at ``blocks.4`` drops every module after it (``blocks.5``, ``conv_head``, ``classifier``…)
and adds ``head``. A plan that still names them cannot be resolved ("unknown module path"), so:

- a selector naming the old classifier (or a module inside it) names ``head`` instead: the new
  head takes the place (frozen or trainable, group) the old one had;
- a selector naming another removed module is dropped, with a notice;
- a group left with no modules is dropped, and so is its name in the unfreeze schedule (a step
  left with no groups is dropped too), each with a notice.

Patterns (globs, ``re:``, ``type:``) are kept: they match what is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.selectors import SelectorMatcher

if TYPE_CHECKING:
    from workbench.layer_tree import LayerTree
    from workbench.plan import FinetunePlan

NEW_HEAD = "head"


def rewrite_for_cut(plan: "FinetunePlan", after: "LayerTree", classifier: str | None) -> list[str]:
    """Rewrite ``plan`` (in place) for the model ``after`` the cut; ``classifier``: the old classifier's path.

    Returns one notice per rewritten or dropped reference."""
    matcher = SelectorMatcher(after)
    notices: list[str] = []

    def removed(selector: str) -> bool:
        return (not matcher.is_pattern(selector) and after.find_node(selector) is None
                and after.find_param(selector) is None)

    def old_classifier(selector: str) -> bool:
        return bool(classifier) and (selector == classifier or selector.startswith(f"{classifier}."))

    def rewrite(selectors: list[str], where: str, whole: bool = False) -> list[str]:
        out: list[str] = []
        dropped: list[str] = []
        for selector in selectors:
            if not removed(selector):
                kept = selector
            elif old_classifier(selector):
                kept = NEW_HEAD
                notices.append(f"{where}: {selector!r} (the old classifier) now names the new head")
            else:
                dropped.append(selector)
                continue
            if kept not in out:
                out.append(kept)
        if dropped:
            what = "dropped" if (whole and not out) else f"dropped {', '.join(dropped)}"
            notices.append(f"{where}: {what} (cut off: {', '.join(dropped)})" if what == "dropped"
                           else f"{where}: {what} (cut off)")
        return out

    plan.freeze.frozen = rewrite(plan.freeze.frozen, "[freeze] frozen")
    plan.freeze.unfrozen = rewrite(plan.freeze.unfrozen, "[freeze] unfrozen")
    dropped_groups: set[str] = set()
    groups = []
    for group in plan.groups:
        group.modules = rewrite(group.modules, f"group {group.name!r}", whole=True)
        if group.modules:
            groups.append(group)
        else:
            dropped_groups.add(group.name)
    plan.groups = groups
    steps = []
    for step in plan.unfreeze:
        step.groups = [g for g in step.groups if g not in dropped_groups]
        if step.groups:
            steps.append(step)
        else:
            notices.append(f"[[unfreeze]] at epoch {step.epoch}: dropped (its groups were cut off)")
    plan.unfreeze = steps
    return notices
