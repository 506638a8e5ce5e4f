"""Plan selectors (module paths, parameter names, globs, ``re:``, ``type:``, ``param:``) matched against a layer tree."""

from __future__ import annotations

import difflib
import fnmatch
import re

from workbench.errors import PlanError
from workbench.layer_tree import LayerTree


class SelectorMatcher:
    """Expands plan selectors (paths, parameter names, globs, regexes, types) against a tree."""

    def __init__(self, tree: LayerTree) -> None:
        self.tree = tree

    def is_pattern(self, selector: str) -> bool:
        return selector.startswith(("re:", "type:", "param:")) or any(c in selector for c in "*?[")

    def match(self, selector: str, where: str) -> tuple[list[int], list[int]]:
        """(node indices, parameter indices) a selector names. Unknown exact paths raise PlanError."""
        tree = self.tree
        if selector.startswith("type:"):
            wanted = selector[5:]
            return [n.index for n in tree.nodes if n.type_name == wanted], []
        if selector.startswith("param:"):  # parameters by own name, optionally of one module class
            kind, _, leaf = selector[6:].rpartition(".")
            return [], [p.index for p in tree.params if fnmatch.fnmatchcase(p.name.rpartition(".")[2], leaf)
                        and (not kind or tree.nodes[p.owner].type_name == kind)]
        if selector.startswith("re:"):
            try:
                rx = re.compile(selector[3:])
            except re.error as exc:
                raise PlanError(f"bad regular expression {selector!r} in {where}: {exc}") from None
            return ([n.index for n in tree.nodes if rx.fullmatch(n.path)],
                    [p.index for p in tree.params if rx.fullmatch(p.name)])
        if self.is_pattern(selector):
            return ([n.index for n in tree.nodes if n.path and fnmatch.fnmatchcase(n.path, selector)],
                    [p.index for p in tree.params if fnmatch.fnmatchcase(p.name, selector)])
        node = tree.find_node(selector)
        if node is not None:
            return [node.index], []
        param = tree.find_param(selector)
        if param is not None:
            return [], [param.index]
        candidates = [n.path for n in tree.nodes if n.path] + [p.name for p in tree.params]
        close = difflib.get_close_matches(selector, candidates, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise PlanError(f"unknown module path {selector!r} in {where}{hint}")
