"""The model as a pure-Python tree of layers: structure, parameters and output shapes.

Built once per loaded model (one walk plus one forward pass with hooks). Everything
that changes when the user ticks a box (trainable counts, tri-state, groups) is
computed from these plain lists by ``workbench.resolve``, never by walking the
``nn.Module`` again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

@dataclass
class LayerNode:
    """One module. ``path`` is its dotted name as ``named_modules`` gives it; the root is ``""``."""

    index: int
    path: str
    name: str
    type_name: str
    depth: int
    parent: int | None
    children: list[int] = field(default_factory=list)
    own_params: list[int] = field(default_factory=list)  # indices into LayerTree.params
    own_param_count: int = 0
    param_count: int = 0  # whole subtree
    subtree_end: int = 0  # nodes[index:subtree_end] is this node's subtree (pre-order)
    output_shape: tuple[int, ...] | None = None
    is_batchnorm: bool = False


@dataclass
class ParamInfo:
    """One parameter tensor: full dotted name, element count, owning node."""

    index: int
    name: str
    numel: int
    owner: int
    shape: tuple[int, ...]


@dataclass
class LayerTree:
    """Pre-order list of nodes plus the parameters they own."""

    nodes: list[LayerNode]
    params: list[ParamInfo]
    model_name: str = ""
    classifier_paths: list[str] = field(default_factory=list)
    # Coarse stages in forward order, as lists of parameter indices (timm group_matcher, or depth).
    stages: list[tuple[str, list[int]]] = field(default_factory=list)
    stage_source: str = ""
    build_seconds: float = 0.0
    forward_seconds: float = 0.0
    # Every BatchNorm still has its initial statistics (running mean 0, variance 1): random init.
    bn_untrained: bool = False
    # Modules wrapped by [adapters] (workbench.adapters): their base weights are frozen, their adapters train.
    adapter_paths: list[str] = field(default_factory=list)
    # Layer of each parameter for layer-wise LR decay (0 = input side; the head is the last), and its source.
    param_layer: list[int] = field(default_factory=list)
    layer_source: str = ""
    _by_path: dict[str, int] = field(default_factory=dict, repr=False)
    _by_param: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_path = {n.path: n.index for n in self.nodes}
        self._by_param = {p.name: p.index for p in self.params}

    @property
    def root(self) -> LayerNode:
        return self.nodes[0]

    @property
    def total_params(self) -> int:
        return self.root.param_count

    def node(self, path: str) -> LayerNode:
        return self.nodes[self._by_path[path]]

    def find_node(self, path: str) -> LayerNode | None:
        index = self._by_path.get(path)
        return None if index is None else self.nodes[index]

    def find_param(self, name: str) -> ParamInfo | None:
        index = self._by_param.get(name)
        return None if index is None else self.params[index]

    def subtree(self, node: LayerNode) -> list[LayerNode]:
        return self.nodes[node.index:node.subtree_end]

    def subtree_params(self, node: LayerNode) -> list[int]:
        return [p for n in self.subtree(node) for p in n.own_params]

    def ancestors(self, node: LayerNode) -> list[LayerNode]:
        """Parent first, root last."""
        chain = []
        while node.parent is not None:
            node = self.nodes[node.parent]
            chain.append(node)
        return chain

    def cover_paths(self, param_indices: list[int]) -> list[str]:
        """The fewest module paths / parameter names that cover exactly these parameters.

        A module is used when every parameter under it is in the set; otherwise its
        children are examined, and parameters left over are named one by one.
        """
        wanted = set(param_indices)
        out: list[str] = []

        def visit(node: LayerNode) -> None:
            under = self.subtree_params(node)
            if not under or not wanted.intersection(under):
                return
            if node.path and wanted.issuperset(under):
                out.append(node.path)
                return
            for p in node.own_params:
                if p in wanted:
                    out.append(self.params[p].name)
            for child in node.children:
                visit(self.nodes[child])

        visit(self.root)
        return out


def build_layer_tree(
    module: "nn.Module",
    example_input: "torch.Tensor | None" = None,
    model_name: str = "",
    classifier_paths: list[str] | None = None,
) -> LayerTree:
    """Walk ``module`` once, and run ``example_input`` (batch 1) through it to record output shapes.

    The forward pass runs in eval mode under ``torch.inference_mode()``: no weight,
    no BatchNorm statistic and no module's train/eval flag is changed by it.
    """
    start = time.perf_counter()
    nodes: list[LayerNode] = []
    params: list[ParamInfo] = []
    seen_params: set[int] = set()
    index_of_module: dict[int, int] = {}
    by_path: dict[str, int] = {}

    for path, mod in module.named_modules():
        parent_path = path.rpartition(".")[0] if path else None
        parent = by_path[parent_path] if parent_path is not None else None
        type_name = type(mod).__name__
        node = LayerNode(
            index=len(nodes),
            path=path,
            name=path.rpartition(".")[2] if path else (model_name or type_name),
            type_name=type_name,
            depth=0 if parent is None else nodes[parent].depth + 1,
            parent=parent,
            is_batchnorm=_is_batchnorm(mod),
        )
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen_params:  # tied weights are counted once, at their first owner
                continue
            seen_params.add(id(p))
            info = ParamInfo(len(params), f"{path}.{pname}" if path else pname, p.numel(), node.index, tuple(p.shape))
            params.append(info)
            node.own_params.append(info.index)
            node.own_param_count += info.numel
        if parent is not None:
            nodes[parent].children.append(node.index)
        nodes.append(node)
        by_path[path] = node.index
        index_of_module.setdefault(id(mod), node.index)

    # Subtree sums and extents, children before parents (reverse pre-order).
    for node in reversed(nodes):
        node.param_count = node.own_param_count + sum(nodes[c].param_count for c in node.children)
        node.subtree_end = nodes[node.children[-1]].subtree_end if node.children else node.index + 1

    tree = LayerTree(nodes=nodes, params=params, model_name=model_name,
                     classifier_paths=[p for p in (classifier_paths or []) if p in by_path])
    tree.bn_untrained = _bn_untrained(module)
    tree.build_seconds = time.perf_counter() - start
    if example_input is not None:
        start = time.perf_counter()
        _record_output_shapes(module, example_input, tree, index_of_module)
        tree.forward_seconds = time.perf_counter() - start
    return tree


def record_output_shapes(module: "nn.Module", example_input: "torch.Tensor", tree: LayerTree) -> None:
    """Run ``example_input`` through ``module`` again and store every node's output shape (a new input size).

    On failure (the model cannot take that input) the tree keeps its previous shapes and the error propagates.
    """
    import time as _time

    old = [n.output_shape for n in tree.nodes]
    index_of_module: dict[int, int] = {}
    for node, (_path, mod) in zip(tree.nodes, module.named_modules()):
        index_of_module.setdefault(id(mod), node.index)
        node.output_shape = None
    start = _time.perf_counter()
    try:
        _record_output_shapes(module, example_input, tree, index_of_module)
    except BaseException:
        for node, shape in zip(tree.nodes, old):
            node.output_shape = shape
        raise
    tree.forward_seconds = _time.perf_counter() - start


def refresh_bn_untrained(module: "nn.Module", tree: LayerTree) -> None:
    """The module's weights were replaced (a run's loaded): whether its BatchNorm statistics are untrained now."""
    tree.bn_untrained = _bn_untrained(module)


def _bn_untrained(module: "nn.Module") -> bool:
    """True when the model has BatchNorm statistics and all of them are still 0 / 1."""
    import torch

    found = False
    for mod in module.modules():
        mean, var = getattr(mod, "running_mean", None), getattr(mod, "running_var", None)
        if not _is_batchnorm(mod) or not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
            continue
        found = True
        if torch.count_nonzero(mean) or not bool(torch.all(var == 1)):
            return False
    return found


def _is_batchnorm(mod: Any) -> bool:
    import torch.nn as nn

    return isinstance(mod, nn.modules.batchnorm._BatchNorm)


def _first_tensor_shape(value: Any) -> tuple[int, ...] | None:
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor_shape(value[0])
    if isinstance(value, dict) and value:
        return _first_tensor_shape(next(iter(value.values())))
    return None


def _record_output_shapes(module: "nn.Module", example_input: "torch.Tensor", tree: LayerTree,
                          index_of_module: dict[int, int]) -> None:
    import torch

    handles = []

    def hook(mod: Any, _inputs: Any, output: Any) -> None:
        node = tree.nodes[index_of_module[id(mod)]]
        if node.output_shape is None:  # a module called twice keeps its first shape
            node.output_shape = _first_tensor_shape(output)

    for mod in module.modules():
        handles.append(mod.register_forward_hook(hook))
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.inference_mode():
            module(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for mod, training in modes:
            mod.training = training
