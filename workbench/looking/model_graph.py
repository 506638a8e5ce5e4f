"""The wiring as a graph: modules as nodes, data flow (skip connections and concatenations too) as edges.

The graph comes from the torch.fx trace (for an ONNX import, onnx2torch's GraphModule: one node per ONNX
operator). Nodes are collapsed to blocks by default: a module is one node unless it is a plain container
(Sequential, ModuleList, ModuleDict) or holds more than ``BLOCK_LEAVES`` leaf modules. Shapes come from one
batch-1 pass of a weightless copy on the meta device (a real pass where that fails). A merge (add, concatenation)
marks the input that comes the shorter way from where the paths split as its skip connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import torch
    import torch.fx as fx
    import torch.nn as nn

BLOCK_LEAVES = 24  # timm's InvertedResidual with SE and BatchNormAct has 14
_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
_MERGES = {"add", "iadd", "cat", "concat", "stack"}  # joins of paths (a multiply is gating, e.g. squeeze-excite)


class GraphUnavailable(WorkbenchError):
    """Why the model cannot be drawn as a graph (the tree still shows it)."""


@dataclass
class GraphNode:
    id: str
    path: str | None  # the module path, or None for a function outside any module (a top-level add)
    type_name: str
    output_shape: tuple[int, ...] | None
    params: int
    state: str  # "frozen", "trainable", "partial", "none" (no parameters)
    merge: bool = False  # an add/concat joining two or more paths
    skips: int = 0  # skip connections inside this node (a collapsed block)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "type": self.type_name,
                "output_shape": list(self.output_shape) if self.output_shape else None,
                "params": self.params, "state": self.state, "skips_inside": self.skips}


@dataclass
class GraphEdge:
    source: str
    target: str
    skip: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "skip": self.skip}


@dataclass
class ModelGraph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    collapsed: bool
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)

    def skips(self) -> list[GraphEdge]:
        return [e for e in self.edges if e.skip]

    def to_json(self) -> dict[str, Any]:
        return {"collapsed": self.collapsed, "nodes": [n.to_json() for n in self.nodes],
                "edges": [e.to_json() for e in self.edges]}


def model_graph(model: "nn.Module", example: "torch.Tensor", collapse: bool = True,
                expanded: frozenset[str] = frozenset(), states: dict[str, str] | None = None) -> ModelGraph:
    """The model's graph; ``collapse`` shows blocks as single nodes except the module paths in ``expanded``.

    ``states``: module path → "frozen"/"trainable"/"partial" from a plan (the window's resolution);
    without it a node's state follows its parameters' ``requires_grad``.

    Skips are found on the full graph; a collapsed block counts those inside it (``GraphNode.skips``).
    """
    gm = _traced_with_shapes(model, example)
    modules = dict(model.named_modules())
    fx_nodes = [n for n in gm.graph.nodes if _is_tensor(n)]
    full = _full_graph(fx_nodes, modules)
    graph = full if not collapse else _collapse(full, fx_nodes, modules, _block_paths(modules, expanded))
    for node in graph.nodes:
        if states and node.path in states and node.params:
            node.state = states[node.path]
    return graph


def _full_graph(fx_nodes: list["fx.Node"], modules: dict[str, "nn.Module"]) -> ModelGraph:
    nodes: list[GraphNode] = []
    for n in fx_nodes:
        module = modules.get(str(n.target)) if n.op == "call_module" else None
        shape = tuple(n.meta["tensor_meta"].shape)
        name = str(n.target) if n.op == "call_module" else n.name
        type_name = type(module).__name__ if module is not None else _op_name(n)
        nodes.append(GraphNode(name, str(n.target) if module is not None else None, type_name, shape,
                               *_params_and_state(module), merge=_merges(n, module)))
    ids = {n.name: node.id for n, node in zip(fx_nodes, nodes)}
    edges = _edges(fx_nodes, ids)
    _mark_skips(nodes, edges)
    return ModelGraph(nodes, edges, collapsed=False)


def _collapse(full: ModelGraph, fx_nodes: list["fx.Node"], modules: dict[str, "nn.Module"],
              blocks: set[str]) -> ModelGraph:
    """``full`` with every node inside a block merged into the block's node; edges between blocks kept."""
    owner: dict[str, str] = {}
    nodes: dict[str, GraphNode] = {}
    for n, node in zip(fx_nodes, full.nodes):
        path = _module_path(n)
        block = _enclosing(path, blocks) if path is not None else None
        if block is None:
            owner[node.id] = node.id
            nodes[node.id] = node
            continue
        owner[node.id] = block
        if block in nodes:
            nodes[block].output_shape = node.output_shape  # a block's output is its last operation's
        else:
            nodes[block] = GraphNode(block, block, type(modules[block]).__name__, node.output_shape,
                                     *_params_and_state(modules[block]))
    edges: dict[tuple[str, str], GraphEdge] = {}
    for e in full.edges:
        source, target = owner[e.source], owner[e.target]
        if e.skip and target != e.target:  # the merge is inside a block: the block holds the skip
            nodes[target].skips += 1
        if source == target:
            continue
        if (source, target) in edges:
            edges[(source, target)].skip |= e.skip and target == e.target
        else:
            edges[(source, target)] = GraphEdge(source, target, e.skip and target == e.target)
    return ModelGraph(list(nodes.values()), list(edges.values()), collapsed=True)


def _traced_with_shapes(model: "nn.Module", example: "torch.Tensor") -> "fx.GraphModule":
    """The fx trace with every node's output shape in ``node.meta["tensor_meta"]``.

    Shapes come from a copy of the model on the meta device first: shapes without arithmetic and without
    copying a weight (efficientnet_b7 at 600 px in about 0.5 s of CPU instead of a real forward pass of many
    seconds). A model that does not run on meta tensors (an ONNX import doing arithmetic on constants) gets
    one real batch-1 pass instead, in evaluation mode so no BatchNorm statistic moves.
    """
    import copy

    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    from workbench.looking.modes import LOOK_LOCK, evaluation_mode

    try:
        memo: dict[int, Any] = {}
        for tensor in [*model.parameters(), *model.buffers()]:
            shell = torch.empty_like(tensor, device="meta")
            memo[id(tensor)] = (torch.nn.Parameter(shell, requires_grad=tensor.requires_grad)
                                if isinstance(tensor, torch.nn.Parameter) else shell)
        shells = copy.deepcopy(model, memo).eval()
    except Exception:  # noqa: BLE001 - a model that cannot be copied onto meta tensors is measured for real
        shells = None
    if shells is not None:
        with LOOK_LOCK:  # see trace(); the copy has the model's structure, so a trace error is the model's
            meta_gm = trace(shells)
        try:
            with torch.no_grad():
                ShapeProp(meta_gm).propagate(torch.empty_like(example, device="meta"))
            return meta_gm
        except Exception:  # noqa: BLE001 - whatever fails on meta tensors is measured for real below
            pass
    with LOOK_LOCK:
        gm = trace(model)
    try:
        with evaluation_mode(model), torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:  # the trace runs, but not on this input: shapes are then unknown
        raise GraphUnavailable(f"the traced graph does not run on a {tuple(example.shape)} input "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    return gm


def trace(model: "nn.Module") -> "fx.GraphModule":
    """The fx trace the feature cache uses (timm's untraceable leaves kept whole); GraphUnavailable if it fails.

    Trap: while fx traces, it patches ``nn.Module.__call__`` for the whole process, so a module called in
    another thread meanwhile (torchvision's transforms are modules) fails with "module is not installed as a
    submodule". The window's looks hold ``LOOK_LOCK`` around the trace and around their own module calls.
    """
    from workbench.training.trunk_features import CacheUnavailable, _trace

    try:
        return _trace(model)
    except CacheUnavailable as exc:
        raise GraphUnavailable(str(exc)) from None


def _block_paths(modules: dict[str, "nn.Module"], expanded: frozenset[str]) -> set[str]:
    """Module paths shown as one node each: the outermost non-container modules with few enough leaves."""
    leaves = {path: sum(1 for m in module.modules() if not list(m.children())) for path, module in modules.items()}
    blocks: set[str] = set()

    def visit(path: str) -> None:
        module = modules[path]
        children = [f"{path}.{name}" if path else name for name, _ in module.named_children()]
        opened = (path == "" or path in expanded or type(module).__name__ in _CONTAINERS
                  or leaves[path] > BLOCK_LEAVES)
        if children and opened:
            for child in children:
                visit(child)
        elif path:
            blocks.add(path)

    visit("")
    return blocks


def _module_path(n: "fx.Node") -> str | None:
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack")
    if stack:
        path = list(stack.keys())[-1]
        return path if isinstance(path, str) else None
    return None


def _enclosing(path: str, blocks: set[str]) -> str | None:
    parts = path.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in blocks:
            return prefix
    return None


def _is_tensor(n: "fx.Node") -> bool:
    if n.op in ("output", "get_attr"):
        return False
    meta = n.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def _op_name(n: "fx.Node") -> str:
    if n.op == "placeholder":
        return "input"
    target = n.target
    name = getattr(target, "__name__", None) or str(target)
    return name.strip("_")


def _merges(n: "fx.Node", module: "nn.Module | None") -> bool:
    """An add or concatenation of two or more tensors (also onnx2torch's Add and Concat modules)."""
    if len([m for m in n.all_input_nodes if _is_tensor(m)]) < 2:
        return False
    if module is None:
        return _op_name(n) in _MERGES
    if type(module).__name__ == "OnnxConcat":
        return True
    function = getattr(module, "math_op_function", None)  # onnx2torch's OnnxBinaryMathOperation
    return getattr(function, "__name__", "") == "add"


def _params_and_state(module: "nn.Module | None") -> tuple[int, str]:
    if module is None:
        return 0, "none"
    params = list(module.parameters())
    if not params:
        return 0, "none"
    trainable = sum(p.requires_grad for p in params)
    state = "trainable" if trainable == len(params) else "frozen" if trainable == 0 else "partial"
    return sum(p.numel() for p in params), state


def _edges(fx_nodes: list["fx.Node"], owner: dict[str, str]) -> list[GraphEdge]:
    """Edges between graph nodes (``owner``: fx node name → node id), one per (from, to) pair, in execution order."""
    seen: dict[tuple[str, str], GraphEdge] = {}
    for n in fx_nodes:
        target = owner[n.name]
        for source_node in _tensor_inputs(n, owner):
            source = owner[source_node.name]
            if source != target and (source, target) not in seen:
                seen[(source, target)] = GraphEdge(source, target)
    return list(seen.values())


def _tensor_inputs(n: "fx.Node", owner: dict[str, str]) -> list["fx.Node"]:
    """The tensor-producing nodes ``n`` reads, looking through non-tensor steps (getitem of a tuple output)."""
    found: list[fx.Node] = []
    stack = list(n.all_input_nodes)
    seen: set[str] = set()
    while stack:
        m = stack.pop()
        if m.name in seen:
            continue
        seen.add(m.name)
        if m.name in owner:
            found.append(m)
        else:
            stack.extend(m.all_input_nodes)
    return found


def _mark_skips(nodes: list[GraphNode], edges: list[GraphEdge]) -> None:
    """For each merge fed by two or more nodes, mark the input that comes the shorter way from the split as a skip."""
    index = {n.id: i for i, n in enumerate(nodes)}
    inputs: dict[str, list[GraphEdge]] = {}
    for e in edges:
        inputs.setdefault(e.target, []).append(e)
    ancestors: dict[str, int] = {}  # bit set of ancestor-or-self positions
    for n in nodes:
        bits = 1 << index[n.id]
        for e in inputs.get(n.id, []):
            bits |= ancestors.get(e.source, 0)
        ancestors[n.id] = bits
    for n in nodes:
        into = inputs.get(n.id, [])
        if not n.merge or len(into) < 2:
            continue
        common = ancestors[into[0].source]
        for e in into[1:]:
            common &= ancestors[e.source]
        if not common:
            continue
        split = common.bit_length() - 1  # the latest node every input comes from
        lengths = {e.source: _longest_path(nodes, inputs, index, split, index[e.source]) for e in into}
        shortest = min(into, key=lambda e: (lengths[e.source], index[e.source]))
        shortest.skip = True


def _longest_path(nodes: list[GraphNode], inputs: dict[str, list[GraphEdge]], index: dict[str, int],
                  start: int, end: int) -> int:
    """Number of edges on the longest path from node ``start`` to node ``end`` (positions in execution order)."""
    depth = {start: 0}
    for i in range(start + 1, end + 1):
        best = [depth[index[e.source]] + 1 for e in inputs.get(nodes[i].id, []) if index[e.source] in depth]
        if best:
            depth[i] = max(best)
    return depth.get(end, 0)


def lay_out(graph: ModelGraph) -> dict[str, tuple[float, float]]:
    """(x, layer) positions from igraph's Sugiyama layout: inputs at the top, data flowing down."""
    import igraph

    index = {n.id: i for i, n in enumerate(graph.nodes)}
    g = igraph.Graph(n=len(graph.nodes), edges=[(index[e.source], index[e.target]) for e in graph.edges],
                     directed=True)
    coords = g.layout_sugiyama().coords[: len(graph.nodes)]
    graph.positions = {n.id: (float(x), float(y)) for n, (x, y) in zip(graph.nodes, coords)}
    return graph.positions


STATE_COLOURS = {"frozen": "#9ecae1", "trainable": "#fdae6b", "partial": "#fdd0a2", "none": "#eeeeee",
                 "cut away": "#d9d9d9"}


def graph_figure(graph: ModelGraph, title: str = "") -> Any:
    """The laid-out graph as a matplotlib figure: one box per node (path, type, shape), skips dashed."""
    from matplotlib.patches import FancyArrowPatch, Patch

    from workbench.looking.pictures import figure

    pos = graph.positions or lay_out(graph)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width, height = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
    fig = figure(max(5.0, width * 2.2), max(4.0, height * 0.62))
    ax = fig.add_axes((0, 0, 1, 0.97 if title else 1))
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(max(ys) + 0.6, min(ys) - 0.6)
    ax.axis("off")
    for e in graph.edges:
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        style = "arc3,rad=0.35" if e.skip else "arc3"
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=style, arrowstyle="-|>", mutation_scale=8,
                                     linestyle="--" if e.skip else "-", color="#c0392b" if e.skip else "#555555",
                                     shrinkA=9, shrinkB=9, linewidth=0.8))
    for n in graph.nodes:
        x, y = pos[n.id]
        shape = "×".join(map(str, n.output_shape[1:])) if n.output_shape else "?"
        skips = f"  +{n.skips} skip" if n.skips else ""
        ax.text(x, y, f"{n.id}\n{n.type_name}{skips}  {shape}", ha="center", va="center", fontsize=6,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": STATE_COLOURS.get(n.state, "#eeeeee"),
                      "edgecolor": "#c0392b" if n.merge else "#666666", "linewidth": 0.6})
    present = {n.state for n in graph.nodes}
    ax.legend(handles=[Patch(facecolor=c, label=s) for s, c in STATE_COLOURS.items() if s in present],
              loc="upper right", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
