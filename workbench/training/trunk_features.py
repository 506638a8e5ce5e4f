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
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError

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

    def same_trunk(self, other: "TrunkSplit") -> bool:
        """The same cut of the same graph over the same tensors: either trunk's outputs serve the other."""
        mine, theirs = self.trunk.state_dict(keep_vars=True), other.trunk.state_dict(keep_vars=True)
        return (self.cut == other.cut and str(self.trunk.graph) == str(other.trunk.graph)
                and mine.keys() == theirs.keys() and all(mine[k] is theirs[k] for k in mine))


class CacheUnavailable(WorkbenchError):
    """Why the trunk cannot be cached (shown to the user as-is)."""


def split_frozen_trunk(model: nn.Module, set_train_mode: Any, will_train: Collection[nn.Parameter] = ()) -> TrunkSplit:
    """Split ``model`` at the end of its frozen, deterministic prefix. Raises CacheUnavailable.

    ``will_train``: frozen parameters to count as trainable (those the next freeze state unfreezes),
    so the cut is where that state's trunk will end.
    """
    if all(p.requires_grad for p in model.parameters()):  # (tracing twice costs ~0.1 s for resnet18)
        raise CacheUnavailable("no frozen prefix to cache (every parameter trains)")
    was_training = model.training
    try:
        set_train_mode(model)
        train_graph = _trace(model)
        cut_index, cut_name, total = _find_cut(model, train_graph, {id(p) for p in will_train})
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
    from timm.models import get_notrace_functions, get_notrace_modules

    leaves = tuple(get_notrace_modules())
    functions = tuple(get_notrace_functions())

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            # peft's LoRA layers branch on tensor dtypes (untraceable); as leaves they hold trainable
            # adapters, so the cached trunk ends before the first one.
            return (isinstance(m, leaves) or type(m).__module__.startswith("peft.")
                    or super().is_leaf_module(m, qualname))

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


def _frozen_module(module: nn.Module, will_train: set[int]) -> bool:
    if any(p.requires_grad or id(p) in will_train for p in module.parameters()):
        return False
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            return False  # would update running statistics
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return False
        if m.training and float(getattr(m, "drop_prob", 0.0) or 0.0) > 0:  # timm DropPath
            return False
    return True


def _find_cut(model: nn.Module, gm: fx.GraphModule, will_train: set[int]) -> tuple[int, str, int]:
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    order = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((order.get(u, len(nodes)) for u in n.users), default=-1) for n in nodes}
    live: set[fx.Node] = set()
    best: tuple[int, str] | None = None
    blocker = ""
    for i, node in enumerate(nodes):
        ok, why = _node_frozen(gm, node, will_train)
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


def _node_frozen(gm: fx.GraphModule, node: fx.Node, will_train: set[int]) -> tuple[bool, str]:
    if node.op == "placeholder":
        return True, ""
    if node.op == "get_attr":
        value = _get_attr(gm, str(node.target))
        if isinstance(value, nn.Parameter) and (value.requires_grad or id(value) in will_train):
            return False, f"trainable parameter {node.target}"
        return True, ""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if _frozen_module(module, will_train):
            return True, ""
        adapter = type(module).__module__.startswith("peft.")
        return False, f"the LoRA adapter on {node.target}" if adapter else f"module {node.target}"
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

class FeatureStore:
    """Trunk outputs for every item of one dataset, filled batch by batch during one epoch.

    In memory, or (when larger than ``MEMORY_LIMIT_BYTES``) in a memory-mapped file that is
    renamed to its final, keyed name only once complete, so a later run reuses it.
    """

    def __init__(self, count: int, shape: tuple[int, ...], disk_path: Path | None) -> None:
        self.count, self.shape, self.disk_path = count, shape, disk_path
        self.complete = False
        numel = count * _prod(shape)
        self.labels = torch.empty(count, dtype=torch.long)
        self.filled = torch.zeros(count, dtype=torch.bool)
        if disk_path is not None and disk_path.exists() and _labels_path(disk_path).exists():
            self.features = torch.from_file(str(disk_path), shared=False, size=numel,
                                            dtype=torch.float32).view(count, *shape)
            self.labels = torch.load(_labels_path(disk_path), weights_only=True)
            self.filled[:] = True
            self.complete = True
        elif disk_path is not None:
            disk_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._partial, "wb") as fh:
                fh.truncate(numel * 4)
            self.features = torch.from_file(str(self._partial), shared=True, size=numel,
                                            dtype=torch.float32).view(count, *shape)
        else:
            self.features = torch.empty((count, *shape), dtype=torch.float32)

    @property
    def _partial(self) -> Path:
        assert self.disk_path is not None
        return self.disk_path.with_suffix(".partial")

    @property
    def nbytes(self) -> int:
        return self.features.numel() * 4

    def put(self, index: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> None:
        index = index.cpu()
        self.features[index] = features.detach().float().cpu()
        self.labels[index] = labels.cpu()
        self.filled[index] = True

    def missing(self) -> torch.Tensor:
        """Indices not filled yet (another rank's share, or batches before a resume)."""
        return (~self.filled).nonzero().flatten()

    def finish(self) -> None:
        """Mark complete (one full pass filled every item); a disk store gets its final name."""
        if self.complete:
            return
        if not bool(self.filled.all()):
            raise RuntimeError(f"feature store finished with {int((~self.filled).sum())} rows unfilled")
        if self.disk_path is not None:
            with atomic_path(_labels_path(self.disk_path)) as tmp:
                torch.save(self.labels, tmp)
            os.replace(self._partial, self.disk_path)
        self.complete = True

    def discard(self) -> None:
        if self.disk_path is not None and not self.complete:
            self._partial.unlink(missing_ok=True)


def open_store(split: TrunkSplit, count: int, shape: tuple[int, ...], data_fingerprint: str,
               part: str) -> FeatureStore:
    disk = None
    if count * _prod(shape) * 4 > MEMORY_LIMIT_BYTES:
        disk = default_cache_dir() / f"{cache_key(split, data_fingerprint, part)}.f32"
    return FeatureStore(count, shape, disk)


def cache_key(split: TrunkSplit, data_fingerprint: str, part: str) -> str:
    """Trunk graph + its weights and buffers + the data (items, split, transform)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"workbench-features-2|{part}|{split.cut}|{data_fingerprint}".encode())
    h.update(str(split.trunk.graph).encode())
    for name, tensor in sorted(split.trunk.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_shape(split: TrunkSplit, example: torch.Tensor) -> tuple[int, ...]:
    with torch.inference_mode():
        out = split.trunk(example)
    if not isinstance(out, torch.Tensor):
        raise CacheUnavailable("the trunk's output at the cut is not a single tensor")
    return tuple(out.shape[1:])


def default_cache_dir() -> Path:
    from workbench.cache_dir import cache_root

    return cache_root() / "features"


def _labels_path(path: Path) -> Path:
    return path.with_suffix(".labels.pt")


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


class InputsCast(nn.Module):
    """``module`` (a low-precision copy of the trunk) on inputs cast to ``dtype``."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: torch.Tensor) -> Any:
        return self.module(x.to(self.dtype))


def folded_trunk(split: TrunkSplit, channels_last: bool, dtype: torch.dtype | None = None
                 ) -> tuple[nn.Module, int, int] | None:
    """A copy of the trunk for inference: BatchNorm folded into the convolutions before it.

    Returns (module, folded BatchNorm count, extra bytes), or None when there is nothing to
    fold (then the copy would cost memory and gain nothing measurable). The model's own
    frozen weights are untouched: only this copy changes. ``dtype`` (the run's autocast
    dtype): the copy is stored in it, so autocast does not cast its weights on every call
    (the same values, half the memory; measured ~5% faster for resnet18 in bf16 on CPU).
    """
    import copy

    from torch.fx.experimental.optimization import matches_module_pattern, replace_node_module
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def batchnorms(gm: fx.GraphModule) -> int:
        modules = dict(gm.named_modules())
        return sum(1 for n in gm.graph.nodes if n.op == "call_module"
                   and isinstance(modules.get(str(n.target)), nn.modules.batchnorm._BatchNorm))

    def finished(module: nn.Module) -> nn.Module:
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module.to(dtype) if dtype is not None else module

    before = batchnorms(split.trunk)
    if before == 0:
        return None
    # The copy starts out sharing the model's tensors (new Parameter objects over the same memory), and
    # each folded convolution is converted as soon as it is made: the memory peak is the finished copy
    # plus one convolution, not a float32 copy of the whole trunk. Nothing writes into the shared
    # tensors: folding makes new ones, and the copy only runs under inference_mode.
    memo: dict[int, Any] = {id(t): nn.Parameter(t.detach(), requires_grad=False) for t in split.trunk.parameters()}
    memo.update({id(t): t.detach() for t in split.trunk.buffers()})
    trunk = copy.deepcopy(split.trunk, memo).eval()
    modules = dict(trunk.named_modules())
    graph = trunk.graph
    folded = 0
    for pattern in ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d)):
        for node in list(graph.nodes):  # (torch.fx.experimental.optimization.fuse, converting as it goes)
            if not matches_module_pattern(pattern, node, modules) or len(node.args[0].users) > 1:
                continue
            conv, bn = modules[node.args[0].target], modules[node.target]
            if not bn.track_running_stats:
                continue
            replace_node_module(node.args[0], modules, finished(fuse_conv_bn_eval(conv, bn)))
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            folded += 1
    if folded == 0:
        return None
    fused: nn.Module = finished(fx.GraphModule(trunk, graph))
    if dtype is not None:
        fused = InputsCast(fused, dtype)
    extra = sum(p.numel() * p.element_size() for p in fused.parameters())
    _return_freed_memory()
    return fused, folded, extra


def _return_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc keeps it otherwise: +30-60 MB of RSS after folding)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to do
            pass
