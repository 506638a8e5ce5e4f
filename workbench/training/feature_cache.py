"""Cached frozen trunk: run the frozen prefix of a model once per image, train only the rest.

The model is traced with ``torch.fx``; the trunk is the longest prefix (in execution
order) whose every operation is frozen and deterministic, cut where exactly one tensor
flows on. Trunk and head are GraphModules that share the original model's parameter
objects, so training the head trains the model. The cache is keyed by the trunk's
weights and buffers, the cut, and the data fingerprint (items, split, transform).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from workbench.atomic import atomic_path

MIN_TRUNK_SHARE = 0.2  # cache only when the frozen prefix is at least this share of the operations
MEMORY_LIMIT_BYTES = int(os.environ.get("WORKBENCH_CACHE_MEMORY_BYTES", 1 << 30))
_RANDOM_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
                     torch.dropout, torch.rand, torch.randn, torch.rand_like, torch.randn_like, torch.bernoulli,
                     torch.randint, torch.randperm, torch.normal, torch.multinomial}


@dataclass
class TrunkSplit:
    """The frozen trunk and trainable head of one model for one freeze state."""

    trunk: fx.GraphModule
    head_train: fx.GraphModule
    head_eval: fx.GraphModule
    cut: str  # name of the fx node whose output is cached
    trunk_ops: int
    total_ops: int

    def describe(self) -> str:
        return f"trunk cut after '{self.cut}' ({self.trunk_ops} of {self.total_ops} operations cached)"


class CacheUnavailable(Exception):
    """Why the trunk cannot be cached (shown to the user as-is)."""


def split_frozen_trunk(model: nn.Module, set_train_mode: Any) -> TrunkSplit:
    """Split ``model`` at the end of its frozen, deterministic prefix. Raises CacheUnavailable."""
    was_training = model.training
    try:
        set_train_mode(model)
        train_graph = _trace(model)
        cut_index, cut_name, total = _find_cut(model, train_graph)
        model.eval()
        eval_graph = _trace(model)
    finally:
        if was_training:
            set_train_mode(model)
        else:
            model.eval()
    trunk = _subgraph(train_graph, cut_name, part="trunk")
    head_train = _subgraph(train_graph, cut_name, part="head")
    if cut_name not in {n.name for n in eval_graph.graph.nodes}:
        raise CacheUnavailable("the model's eval-mode graph differs from its training graph at the cut")
    head_eval = _subgraph(eval_graph, cut_name, part="head")
    return TrunkSplit(trunk, head_train, head_eval, cut_name, cut_index, total)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        from timm.models._features_fx import get_notrace_functions, get_notrace_modules

        leaves = tuple(get_notrace_modules())
        functions = tuple(get_notrace_functions())
    except Exception:
        leaves, functions = (), ()

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or super().is_leaf_module(m, qualname)

    if isinstance(model, fx.GraphModule):
        return fx.GraphModule(model, model.graph)
    try:
        tracer = Tracer(autowrap_functions=functions)
        # Optional forward arguments (timm ViT's attn_mask, is_causal) are fixed at their
        # defaults; left as placeholders they would stay live across every block.
        import inspect

        params = list(inspect.signature(model.forward).parameters.values())[1:]
        concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as exc:
        raise CacheUnavailable(f"the model cannot be traced with torch.fx ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:120]})") from None
    return fx.GraphModule(tracer.root, graph)


def _frozen_module(module: nn.Module) -> bool:
    if any(p.requires_grad for p in module.parameters()):
        return False
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            return False  # would update running statistics
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return False
        if m.training and float(getattr(m, "drop_prob", 0.0) or 0.0) > 0:  # timm DropPath
            return False
    return True


def _find_cut(model: nn.Module, gm: fx.GraphModule) -> tuple[int, str, int]:
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    order = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((order.get(u, len(nodes)) for u in n.users), default=-1) for n in nodes}
    live: set[fx.Node] = set()
    best: tuple[int, str] | None = None
    blocker = ""
    for i, node in enumerate(nodes):
        ok, why = _node_frozen(gm, node)
        if not ok:
            blocker = why
            break
        live.add(node)
        live = {n for n in live if last_use[n] > i}
        if live == {node} and node.op != "placeholder" and node.op != "get_attr":
            best = (i, node.name)
    else:
        raise CacheUnavailable("every operation is frozen: nothing to train")
    if best is None:
        raise CacheUnavailable(f"no frozen prefix to cache (first trainable or random operation: {blocker})")
    compute_ops = sum(1 for n in nodes[:best[0] + 1] if n.op in ("call_module", "call_function", "call_method"))
    if compute_ops == 0:
        raise CacheUnavailable("the frozen prefix does no computation")
    total = sum(1 for n in nodes if n.op in ("call_module", "call_function", "call_method"))
    if compute_ops < MIN_TRUNK_SHARE * total:
        raise CacheUnavailable(f"the frozen prefix is only {compute_ops} of {total} operations (it ends at "
                               f"{blocker or 'the cut'}): too little to be worth caching")
    return compute_ops, best[1], total


def _node_frozen(gm: fx.GraphModule, node: fx.Node) -> tuple[bool, str]:
    if node.op == "placeholder":
        return True, ""
    if node.op == "get_attr":
        value = _get_attr(gm, str(node.target))
        if isinstance(value, nn.Parameter) and value.requires_grad:
            return False, f"trainable parameter {node.target}"
        return True, ""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return (True, "") if _frozen_module(module) else (False, f"module {node.target}")
    if node.op == "call_function" and node.target in _RANDOM_FUNCTIONS:
        if node.target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout):
            p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            if not training or not p:
                return True, ""
        return False, f"random operation {getattr(node.target, '__name__', node.target)}"
    return True, ""


def _get_attr(gm: nn.Module, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _subgraph(gm: fx.GraphModule, cut: str, part: str) -> fx.GraphModule:
    """The trunk (input → cut) or the head (cut → output) of a traced graph, sharing parameters."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    nodes = list(gm.graph.nodes)
    cut_node = next(n for n in nodes if n.name == cut)
    index = nodes.index(cut_node)
    if part == "trunk":
        for node in nodes[:index + 1]:
            env[node] = graph.node_copy(node, lambda n: env[n])
        graph.output(env[cut_node])
    else:
        env[cut_node] = graph.placeholder("features")
        for node in nodes[index + 1:]:
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.lint()
    return fx.GraphModule(gm, graph)


# --- the cache ---------------------------------------------------------------------------

@dataclass
class FeatureCache:
    """Trunk outputs for a dataset's items, in item order, with their labels."""

    features: torch.Tensor
    labels: torch.Tensor
    on_disk: Path | None = None

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


def cache_key(split: TrunkSplit, data_fingerprint: str, part: str) -> str:
    h = hashlib.sha256()
    h.update(f"workbench-features-1|{part}|{split.cut}|{data_fingerprint}".encode())
    h.update(str(split.trunk.graph).encode())
    for name, tensor in sorted(split.trunk.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def feature_shape(split: TrunkSplit, example: torch.Tensor) -> tuple[int, ...]:
    with torch.inference_mode():
        out = split.trunk(example)
    if not isinstance(out, torch.Tensor):
        raise CacheUnavailable("the trunk's output at the cut is not a single tensor")
    return tuple(out.shape[1:])


def build_cache(split: TrunkSplit, dataset: Any, batch_size: int, device: torch.device,
                amp_dtype: torch.dtype | None, cache_dir: Path, key: str, num_workers: int,
                should_stop: Any = lambda: False) -> FeatureCache | None:
    """Run the trunk over ``dataset`` once (in item order). Returns None if stopped part-way."""
    from torch.utils.data import DataLoader

    n = len(dataset)
    example, _ = dataset[0]
    shape = feature_shape(split, example[None].to(device))
    nbytes = n * int(torch.tensor(shape).prod()) * 4
    disk_path = cache_dir / f"{key}.f32" if nbytes > MEMORY_LIMIT_BYTES else None
    labels = torch.empty(n, dtype=torch.long)
    if disk_path is not None and disk_path.exists() and disk_path.with_suffix(".labels.pt").exists():
        features = torch.from_file(str(disk_path), shared=False, size=n * int(torch.tensor(shape).prod()),
                                   dtype=torch.float32).view(n, *shape)
        return FeatureCache(features, torch.load(disk_path.with_suffix(".labels.pt"), weights_only=True), disk_path)
    if disk_path is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = disk_path.with_suffix(".partial")
        with open(tmp, "wb") as fh:
            fh.truncate(nbytes)
        store = torch.from_file(str(tmp), shared=True, size=n * int(torch.tensor(shape).prod()),
                                dtype=torch.float32).view(n, *shape)
    else:
        store = torch.empty((n, *shape), dtype=torch.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    start = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for images, targets in loader:
            out = split.trunk(images.to(device, non_blocking=True))
            count = targets.shape[0]
            store[start:start + count] = out.float().cpu()
            labels[start:start + count] = targets
            start += count
            if should_stop():
                return None
    if disk_path is not None:
        with atomic_path(disk_path.with_suffix(".labels.pt")) as tmp_labels:
            torch.save(labels, tmp_labels)
        os.replace(disk_path.with_suffix(".partial"), disk_path)
    return FeatureCache(store, labels, disk_path)


def default_cache_dir() -> Path:
    root = os.environ.get("WORKBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "workbench")
    return Path(root) / "features"
