"""LoRA adapters from Hugging Face ``peft`` on the modules an ``[adapters]`` section selects.

``peft.inject_adapter_in_model`` wraps each selected module in place: its own weight moves to
``<path>.base_layer`` (frozen, bit-identical after training) and the adapter's tensors live in
``<path>.lora_A`` / ``<path>.lora_B`` (trainable). Selectors are the ones ``[freeze]`` takes,
matched against the model before adapters exist. Exports merge the adapters into the base weights
(``merged_copy``); ``save_adapters`` writes peft's own adapter format. peft is imported only here,
and only when a plan has adapters (it pulls in transformers: seconds of import).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import PlanError, WorkbenchError
from workbench.layer_tree import LayerTree
from workbench.plan import AdapterConfig
from workbench.selectors import SelectorMatcher

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


ADAPTABLE = ("Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding")  # torch.nn classes (and subclasses) peft's LoRA takes
BASE = "base_layer"  # peft's name for the wrapped module inside an adapted one
ADAPTER_NAME = "default"
PEFT_PREFIX = "base_model.model."  # how a PeftModel names its tensors: peft's loaders expect it
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"


@dataclass
class AdapterTargets:
    """The modules an [adapters] section adapts (model order), and what its patterns skipped."""

    paths: list[str]
    skipped_grouped: list[str] = field(default_factory=list)
    skipped_narrow: list[str] = field(default_factory=list)  # over [adapters] max_share
    max_share: float | None = None

    def notes(self) -> list[str]:
        out = []
        if self.skipped_grouped:
            out.append(f"[adapters]: {len(self.skipped_grouped)} grouped (depthwise) convolution(s) the selectors "
                       f"match are left without an adapter ({_some(self.skipped_grouped)}): peft cannot merge LoRA "
                       "into a grouped convolution")
        if self.skipped_narrow:
            out.append(f"[adapters]: {len(self.skipped_narrow)} layer(s) the selectors match are left frozen "
                       f"without an adapter ({_some(self.skipped_narrow)}): their adapter would have more than "
                       f"max_share = {self.max_share:g} of the layer's weight")
        return out


def _some(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (" …" if len(paths) > 3 else "")


def _adaptable_kind(module: "nn.Module") -> str | None:
    import torch.nn as nn

    for name in ADAPTABLE:
        if isinstance(module, getattr(nn, name)):
            return name
    return None


def _rank_limit(module: "nn.Module") -> tuple[int, str]:
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return min(module.in_features, module.out_features), f"in {module.in_features}, out {module.out_features}"
    if isinstance(module, nn.Embedding):
        return min(module.num_embeddings, module.embedding_dim), f"{module.num_embeddings} × {module.embedding_dim}"
    conv: Any = module
    fan_in = conv.in_channels * math.prod(conv.kernel_size)
    return min(fan_in, conv.out_channels), f"in {conv.in_channels}×{'×'.join(map(str, conv.kernel_size))}, out {conv.out_channels}"


def adapter_share(module: "nn.Module", rank: int) -> float:
    """The parameters of a rank-``rank`` LoRA adapter on ``module`` (A: fan-in × rank, B: rank × out) over its weight's."""
    import torch.nn as nn

    weight: Any = module.weight
    if isinstance(module, nn.Linear):
        fan_in, out = module.in_features, module.out_features
    elif isinstance(module, nn.Embedding):
        fan_in, out = module.num_embeddings, module.embedding_dim
    else:
        conv: Any = module
        fan_in, out = conv.in_channels * math.prod(conv.kernel_size), conv.out_channels
    return rank * (fan_in + out) / weight.numel()


def adaptable_rank_limit(module: "nn.Module") -> int:
    """The largest rank a LoRA adapter on this module may have; 0 when peft cannot adapt it here."""
    kind = _adaptable_kind(module)
    if kind is None or type(module).__module__.startswith("peft.") or getattr(module, "groups", 1) > 1:
        return 0
    return _rank_limit(module)[0]


def adapter_targets(module: "nn.Module", tree: LayerTree, config: AdapterConfig) -> AdapterTargets:
    """Match ``config.modules`` on the un-adapted model; raise PlanError with one clear reason when unusable."""
    if tree.adapter_paths:
        raise PlanError("this model already has adapters; load it without them before adding new ones")
    matcher = SelectorMatcher(tree)
    modules = dict(module.named_modules())
    chosen: dict[str, None] = {}
    skipped: list[str] = []
    narrow: list[str] = []
    share = config.max_share
    can = ", ".join(ADAPTABLE)
    for selector in config.modules:
        nodes, params = matcher.match(selector, "[adapters] modules")
        if not nodes:
            what = "a parameter; adapters go on modules" if params else "no module"
            raise PlanError(f"[adapters] modules: {selector!r} matches {what} (e.g. type:Linear, type:Conv2d, "
                            "or a module path from `workbench inspect`)")
        fit, grouped, other = [], [], []
        for index in nodes:
            path = tree.nodes[index].path
            kind = _adaptable_kind(modules[path])
            if kind is None:
                other.append(tree.nodes[index].type_name)
            elif kind.startswith("Conv") and getattr(modules[path], "groups", 1) > 1:
                grouped.append(path)
            else:
                fit.append(path)
        exact = not matcher.is_pattern(selector)
        if exact and other:
            raise PlanError(f"[adapters] modules: {selector!r} is a {other[0]}, which peft's LoRA cannot adapt "
                            f"(it adapts {can}); name one of its layers instead")
        if exact and grouped:
            raise PlanError(f"[adapters] modules: {selector!r} is a grouped convolution (groups = "
                            f"{modules[grouped[0]].groups}): peft cannot merge LoRA into it, so it could not "
                            "be exported; adapt a pointwise or full convolution instead")
        if not fit:
            types = sorted(set(other)) + (["grouped Conv2d"] if grouped else [])
            raise PlanError(f"[adapters] modules: {selector!r} matches {len(nodes)} module(s) ({', '.join(types[:5])}), "
                            f"none of which peft's LoRA can adapt (it adapts {can})")
        if exact:
            _check_rank(fit[0], modules[fit[0]], config.rank)  # before max_share: the more basic reason
        wide = [p for p in fit if share is None or adapter_share(modules[p], config.rank) <= share]
        if exact and not wide:
            raise PlanError(f"[adapters] modules: {selector!r}: a rank-{config.rank} adapter would have "
                            f"{adapter_share(modules[fit[0]], config.rank):.0%} of its weight, over max_share = "
                            f"{share:g}; lower the rank, raise max_share, or leave it out")
        if not wide:
            raise PlanError(f"[adapters] modules: {selector!r} matches {len(fit)} layer(s), but on each a "
                            f"rank-{config.rank} adapter would have more than max_share = {share:g} of its weight; "
                            "lower the rank or raise max_share")
        chosen.update(dict.fromkeys(wide))
        skipped += [p for p in grouped if p not in skipped]
        narrow += [p for p in fit if p not in wide and p not in narrow]
    order = {n.path: n.index for n in tree.nodes}
    paths = sorted(chosen, key=order.__getitem__)
    for path in paths:
        _check_rank(path, modules[path], config.rank)
    return AdapterTargets(paths, [p for p in skipped if p not in chosen], [p for p in narrow if p not in chosen], share)


def _check_rank(path: str, module: "nn.Module", rank: int) -> None:
    limit, shape = _rank_limit(module)
    if rank > limit:
        raise PlanError(f"[adapters] rank {rank} is larger than {path} allows ({limit}: a "
                        f"{type(module).__name__} with {shape}); use rank <= {limit} or leave it out")


def lora_config(config: AdapterConfig, paths: list[str], architecture: str = "") -> Any:
    """peft's LoraConfig for exactly these module paths (a full-match regex: no suffix surprises)."""
    from peft import LoraConfig

    alpha: Any = config.alpha if config.alpha is not None else config.rank  # peft types it int; a float works
    return LoraConfig(r=config.rank, lora_alpha=alpha,
                      lora_dropout=config.dropout, bias="none",
                      target_modules="^(?:" + "|".join(re.escape(p) for p in paths) + ")$",
                      base_model_name_or_path=architecture or None)


def inject_adapters(module: "nn.Module", tree: LayerTree, config: AdapterConfig, architecture: str) -> AdapterTargets:
    """Put ``config``'s LoRA adapters into ``module`` in place (peft's ``inject_adapter_in_model``)."""
    from peft import inject_adapter_in_model

    targets = adapter_targets(module, tree, config)
    inject_adapter_in_model(lora_config(config, targets.paths, architecture), module)
    return targets


def param_roles(tree: LayerTree) -> dict[int, bool]:
    """Parameter index -> trainable, for the parameters adapters decide: the adapter's (True), its base's (False)."""
    roles: dict[int, bool] = {}
    for path in tree.adapter_paths:
        node = tree.find_node(path)
        if node is None:
            continue
        base = f"{path}.{BASE}."
        for p in tree.subtree_params(node):
            roles[p] = not tree.params[p].name.startswith(base)
    return roles


def has_adapters(module: "nn.Module") -> bool:
    """Whether peft layers sit in the module (checked without importing peft)."""
    return any(type(m).__module__.startswith("peft.") for m in module.modules())


def adapted_paths(module: "nn.Module") -> list[str]:
    """Paths of the modules peft wrapped with a LoRA adapter, in model order."""
    if not has_adapters(module):
        return []
    from peft.tuners.lora import LoraLayer

    return [n for n, m in module.named_modules() if isinstance(m, LoraLayer)]


def merged_copy(module: "nn.Module") -> "nn.Module":
    """A copy with every LoRA adapter merged into its base weight by peft and the wrappers removed.

    The result has the plain model's structure and tensor names (timm / ONNX / TorchScript see no adapter).
    """
    import copy

    from peft.tuners.lora import LoraLayer

    merged = copy.deepcopy(module)
    for path, layer in [(n, m) for n, m in merged.named_modules() if isinstance(m, LoraLayer)]:
        try:
            layer.merge(safe_merge=True)
        except ValueError as exc:  # peft refuses to merge NaN weights
            raise WorkbenchError(f"cannot merge the adapter of {path}: {exc}") from None
        parent_path, _, name = path.rpartition(".")
        setattr(merged.get_submodule(parent_path), name, layer.get_base_layer())
    if hasattr(merged, "peft_config"):
        del merged.peft_config
    return merged


def without_adapters(module: "nn.Module") -> "nn.Module":
    """The module with every LoRA wrapper replaced by the layer it wraps (in place; adapters dropped, not merged)."""
    if not has_adapters(module):
        return module
    from peft.tuners.lora import LoraLayer

    for path, layer in [(n, m) for n, m in module.named_modules() if isinstance(m, LoraLayer)]:
        parent_path, _, name = path.rpartition(".")
        setattr(module.get_submodule(parent_path), name, layer.get_base_layer())
    if hasattr(module, "peft_config"):
        del module.peft_config
    return module


def save_adapters(module: "nn.Module", config: AdapterConfig, paths: list[str], out: Path, architecture: str) -> list[Path]:
    """peft's adapter format in the folder ``out``: adapter_model.safetensors + adapter_config.json (atomic).

    ``peft.PeftModel.from_pretrained(fresh_model, out)`` loads it back.
    """
    from peft.utils import get_peft_model_state_dict

    from workbench.atomic import atomic_path, atomic_write_text
    from workbench.safetensors_file import write_safetensors

    if not paths:
        raise WorkbenchError("this model has no adapters to export (--adapters-only needs a run with [adapters])")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"cannot write {out}: it is a file, not a folder")
    state = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(module).items()}
    out.mkdir(parents=True, exist_ok=True)
    weights, config_file = out / ADAPTER_WEIGHTS, out / ADAPTER_CONFIG
    with atomic_path(weights) as tmp:
        write_safetensors(state, tmp)
    data = lora_config(config, paths, architecture).to_dict()
    atomic_write_text(config_file, json.dumps(data, indent=2, default=sorted) + "\n")
    return [weights, config_file]


def load_adapters(module: "nn.Module", folder: Path) -> "nn.Module":
    """Inject a saved adapter (``save_adapters`` / peft's ``save_pretrained``) into a fresh model; checked first."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise WorkbenchError(f"{folder} is not an adapter export: {name} is missing")
    config = LoraConfig.from_pretrained(str(folder))
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()}
    made_for = config.base_model_name_or_path or "another model"
    modules = dict(module.named_modules())
    for key, tensor in state.items():
        path = key.split(".lora_")[0]
        if path not in modules:
            raise WorkbenchError(f"the adapter in {folder} was made for {made_for}: this model has no module {path!r}")
        expected = _expected_shape(modules[path], key, config.r)
        if expected is not None and tuple(tensor.shape) != expected:
            raise WorkbenchError(f"the adapter in {folder} was made for {made_for}: {key} has shape "
                                 f"{tuple(tensor.shape)}, this model needs {expected}")
    inject_adapter_in_model(config, module)
    set_peft_model_state_dict(module, state)
    return module


def _expected_shape(module: "nn.Module", key: str, rank: int) -> tuple[int, ...] | None:
    import torch.nn as nn

    a = ".lora_A." in key
    if isinstance(module, nn.Linear):
        return (rank, module.in_features) if a else (module.out_features, rank)
    if isinstance(module, nn.modules.conv._ConvNd):
        ones = (1,) * len(module.kernel_size)
        return (rank, module.in_channels, *module.kernel_size) if a else (module.out_channels, rank, *ones)
    return None


def effective_changes(state: dict[str, "torch.Tensor"], scale: float) -> dict[str, tuple[float, float]]:
    """Per adapted module path: (‖scale·B·A‖², ‖W‖²), from a state dict holding its base and adapter tensors."""
    out = {}
    for key, a in state.items():
        match = re.fullmatch(r"(.+)\.lora_A\.([^.]+)\.weight", key)
        if not match:
            continue
        path, name = match.groups()
        b, w = state.get(f"{path}.lora_B.{name}.weight"), state.get(f"{path}.{BASE}.weight")
        if b is None or w is None:
            continue
        delta = (b.double().flatten(1) @ a.double().flatten(1)) * scale  # peft's delta weight, flattened
        out[path] = (float(delta.pow(2).sum()), float(w.double().pow(2).sum()))
    return out


def adapter_summary(tree: LayerTree) -> dict[str, Any]:
    """What ``inspect --json`` reports about adapters: adapted modules and the adapter parameter count."""
    roles = param_roles(tree)
    return {"modules": list(tree.adapter_paths),
            "adapter_params": sum(tree.params[p].numel for p, trains in roles.items() if trains),
            "base_params": sum(tree.params[p].numel for p, trains in roles.items() if not trains)}
