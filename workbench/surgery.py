"""Cut a network at any module path and attach a new head (the project's ``[head]`` table).

The cut works on a torch.fx graph, so it applies to timm models and ONNX imports
(onnx2torch GraphModules) alike. The cut module is traced as a leaf; its output becomes
the features, every node after it is dropped, and a ``head`` submodule is appended.
Original module paths are kept, so freezing, groups and the resolver work unchanged.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import PlanError, WorkbenchError
from workbench.plan import HEAD_KEYS, HeadSpec
from workbench.schema_sections import section_from_table

if TYPE_CHECKING:
    import torch.fx as fx
    import torch.nn as nn

    from workbench.backbone import Backbone

class SurgeryError(WorkbenchError):
    """A [head] table or cut that cannot be applied, with a specific message."""


class _Untraceable(SurgeryError):
    """torch.fx cannot trace the model (control flow on tensor values or shapes)."""


def parse_head(values: Any, where: str = "project [head]") -> HeadSpec:
    """Validate a ``[head]`` table through the schema (cut paths are checked against a model later)."""
    try:
        return section_from_table(HeadSpec, values, where)
    except PlanError as exc:
        raise SurgeryError(str(exc)) from None


def _check_cut(model: "nn.Module", cut: str) -> None:
    names = [n for n, _ in model.named_modules() if n]
    if cut not in names:
        close = difflib.get_close_matches(cut, names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SurgeryError(f"[head] cut: no module {cut!r} in this model{hint}")


def default_cut(model: "nn.Module", classifier: str | None) -> str:
    """The module whose output feeds the classifier: the module just before it in the tree."""
    names = [n for n, _ in model.named_children()]
    top = classifier.split(".")[0] if classifier else None
    if top in names and names.index(top) > 0:
        return names[names.index(top) - 1]
    raise SurgeryError("[head] cut: this model has no known classifier; name a module to cut at")


def _check_not_classifier(cut: str, classifier: str | None, model: "nn.Module") -> None:
    """A cut at (or around) the classifier would stack the new head on the old one's outputs: refused."""
    if not classifier or not (cut == classifier or classifier.startswith(cut + ".") or cut.startswith(classifier + ".")):
        return
    try:
        instead = f"leave cut out (or cut = {default_cut(model, classifier)!r}) to replace the classifier"
    except SurgeryError:
        instead = "name the module before the classifier to replace it"
    raise SurgeryError(f"[head] cut = {cut!r} keeps the classifier {classifier!r}: the new head would be stacked "
                       f"on the old classifier's outputs; {instead}")


def head_parameter_count(spec: HeadSpec, feature_shape: tuple[int, ...], num_classes: int) -> int:
    """Parameters of the head ``make_head`` would build (computed without allocating it)."""
    if spec.pool in ("flatten", "none") or len(feature_shape) == 1:
        width = math.prod(feature_shape)
    else:
        width = (feature_shape[-1] if len(feature_shape) == 2 else feature_shape[0]) * (2 if spec.pool == "avgmax" else 1)
    total = 0
    for size in [*spec.hidden, num_classes]:
        total += width * size + size
        width = size
    return total


def _check_head_fits(spec: HeadSpec, feature_shape: tuple[int, ...], num_classes: int) -> None:
    """Refuse a head whose training state (weights, gradients, two AdamW moments: 16 bytes a parameter) exceeds
    this machine's memory, before anything is allocated."""
    params = head_parameter_count(spec, feature_shape, num_classes)
    need = 16 * params
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > memory:
        raise SurgeryError(f"[head] the new head would have {params:,} parameters ({need / 2**30:,.1f} GiB to train in "
                           f"float32 with AdamW), more than this machine's {memory / 2**30:,.1f} GiB of memory; "
                           f"use smaller hidden sizes (now {spec.hidden}) or pool the features")


def make_head(spec: HeadSpec, feature_shape: tuple[int, ...], num_classes: int) -> "nn.Module":
    """Pool (over spatial or token dims) + MLP ending in ``num_classes`` outputs."""
    import torch.nn as nn

    _check_head_fits(spec, feature_shape, num_classes)
    layers: list[nn.Module] = []
    if spec.pool == "none":
        if len(feature_shape) != 1:
            raise SurgeryError(f"[head] pool \"none\" needs flat features, but the cut gives shape {list(feature_shape)}; "
                               "use avg, max, avgmax or flatten")
        width = feature_shape[0]
    elif spec.pool == "flatten" or len(feature_shape) == 1:
        width = 1
        for d in feature_shape:
            width *= d
        layers.append(nn.Flatten(1))
    else:
        layers.append(_Pool(spec.pool, channels_last=len(feature_shape) == 2))
        width = feature_shape[-1] if len(feature_shape) == 2 else feature_shape[0]
        width *= 2 if spec.pool == "avgmax" else 1
    act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}.get(spec.activation)
    for h in spec.hidden:
        layers.append(nn.Linear(width, h))
        if act is not None:
            layers.append(act())
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        width = h
    if spec.dropout > 0 and not spec.hidden:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _pool_module() -> type:
    import torch
    import torch.nn as nn

    class Pool(nn.Module):
        """Global pooling of (B, C, ...) maps, or of (B, tokens, C) sequences when ``channels_last``."""

        def __init__(self, mode: str, channels_last: bool) -> None:
            super().__init__()
            self.mode = mode
            self.channels_last = channels_last

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            dims = [1] if self.channels_last else list(range(2, x.dim()))
            if self.mode == "avg":
                return x.mean(dim=dims)
            if self.mode == "max":
                return x.amax(dim=dims)
            return torch.cat([x.mean(dim=dims), x.amax(dim=dims)], dim=1)

        def extra_repr(self) -> str:
            return f"mode={self.mode!r}, channels_last={self.channels_last}"

    return Pool


def _Pool(mode: str, channels_last: bool) -> "nn.Module":
    global _POOL_CLS
    if _POOL_CLS is None:
        _POOL_CLS = _pool_module()
    return _POOL_CLS(mode, channels_last)


_POOL_CLS: Any = None


def cut_at(model: "nn.Module", cut: str) -> "fx.GraphModule":
    """A GraphModule computing ``model`` up to (and including) module ``cut``; the rest is dropped."""
    import torch.fx as fx

    _check_cut(model, cut)
    if isinstance(model, fx.GraphModule) and any(n.op == "call_module" and n.target == cut for n in model.graph.nodes):
        graph = _copy_graph(model.graph)
        root: Any = model
    else:
        class _Leaf(fx.Tracer):
            def is_leaf_module(self, m: Any, qualname: str) -> bool:
                # Only the cut's ancestors are opened up; every other module stays one call
                # (keeps its paths, and shape checks inside it never meet a Proxy).
                return not cut.startswith(qualname + ".")

        try:
            graph = _Leaf().trace(model)
        except Exception as exc:  # fx cannot trace data-dependent control flow
            raise _Untraceable(f"[head] cut: this model cannot be traced to cut at {cut!r} ({type(exc).__name__}: {exc})") from None
        root = model
    hits = [n for n in graph.nodes if n.op == "call_module" and n.target == cut]
    if not hits:
        raise SurgeryError(f"[head] cut: module {cut!r} is not called in the forward pass (or is inside a module "
                           "that cannot be split); choose a module shown with an output shape")
    feat = hits[-1]
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (feat,)
    gm = fx.GraphModule(root, graph, class_name=type(model).__name__ + "Cut")
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _copy_graph(graph: Any) -> Any:
    import torch.fx as fx

    new = fx.Graph()
    out = new.graph_copy(graph, {})
    new.output(out)
    return new


def feature_shape(trunk: "nn.Module", input_size: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample shape of the trunk's output for one input of ``input_size``."""
    import torch

    was = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            out = trunk(torch.zeros(1, *input_size))
    finally:
        trunk.train(was)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return tuple(out.shape[1:])


def attach_head(model: "nn.Module", spec: HeadSpec, num_classes: int, input_size: tuple[int, ...],
                classifier: str | None = None) -> "nn.Module":
    """Cut ``model`` at ``spec.cut`` and append a ``head`` submodule; original paths are kept."""
    cut = spec.cut or default_cut(model, classifier)
    _check_not_classifier(cut, classifier, model)
    try:
        trunk = cut_at(model, cut)
    except _Untraceable:
        from workbench.vit_cut import attach_vit_head, is_timm_vit

        if not is_timm_vit(model):
            raise
        return attach_vit_head(model, cut, spec, num_classes, input_size)
    feats = feature_shape(trunk, input_size)
    head = make_head(spec, feats, num_classes)
    trunk.add_submodule("head", head)
    graph = trunk.graph
    output = next(n for n in graph.nodes if n.op == "output")
    feat = output.args[0]
    with graph.inserting_before(output):
        new = graph.call_module("head", (feat,))
    output.args = (new,)
    trunk.recompile()
    return trunk


def preview(model: "nn.Module", spec: HeadSpec, num_classes: int, input_size: tuple[int, ...],
            classifier: str | None = None) -> dict[str, Any]:
    """Shape and parameter counts of the cut model before applying (for the GUI and inspect)."""
    import copy

    built = attach_head(copy.deepcopy(model), spec, num_classes, input_size, classifier)
    head = built.get_submodule("head")
    feats = _head_input_shape(built, head, input_size)
    return {
        "cut": spec.cut or default_cut(model, classifier),
        "feature_shape": list(feats),
        "output_shape": [num_classes],
        "head_params": sum(p.numel() for p in head.parameters()),
        "total_params": sum(p.numel() for p in built.parameters()),
    }


def _head_input_shape(built: "nn.Module", head: "nn.Module", input_size: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample shape of what ``head`` receives in ``built``, for one input of ``input_size``."""
    seen: list[tuple[int, ...]] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[1:])))
    try:
        feature_shape(built, input_size)
    finally:
        hook.remove()
    return seen[0]


def apply_to_backbone(backbone: "Backbone", spec: HeadSpec, num_classes: int | None = None) -> "Backbone":
    """Replace ``backbone.module`` by its cut + new head; the spec records the recipe for export."""
    classes = num_classes or backbone.spec.num_classes
    cut = spec.cut or default_cut(backbone.module, backbone.spec.classifier)
    module = attach_head(backbone.module, spec, classes, backbone.spec.input_size, backbone.spec.classifier)
    backbone.module = module
    backbone.spec.num_classes = classes
    backbone.spec.classifier = "head"
    backbone.spec.extra["classifiers"] = ["head"]
    backbone.spec.extra["workbench_head"] = {**spec.to_dict(), "cut": cut, "source": backbone.source,
                                             "base": backbone.ref, "input_size": list(backbone.spec.input_size)}
    return backbone


def rebuild_from_config(folder: str | Path, base_file: str | Path | None = None) -> "nn.Module":
    """Rebuild an exported cut model from its ``config.json`` recipe and load ``model.safetensors``.

    The base is loaded again by the model source that loaded it first (the recipe names it), with the same
    request, so a source's own import steps (the ONNX importer's rewrite passes) run again. A base that is a
    file is read from where it was, or from ``base_file``.
    """
    import json

    from safetensors.torch import load_file

    from workbench.backbone import LoadRequest
    from workbench.model_request import base_classes
    from workbench.plugins import MODEL_SOURCES, registry
    from workbench.sources import capabilities

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    recipe = (config.get("workbench") or {}).get("head")
    if not recipe:
        raise SurgeryError(f"{folder / 'config.json'} has no workbench head recipe; use timm.create_model")
    spec = parse_head({k: recipe[k] for k in HEAD_KEYS if k in recipe})
    input_size = tuple(recipe["input_size"])
    num_classes = int(config["num_classes"])
    source = registry().get(MODEL_SOURCES, recipe["source"])
    caps = capabilities(recipe["source"])
    ref = str(base_file or recipe["base"])
    if caps.takes_files and not Path(ref).expanduser().is_file():
        raise SurgeryError(f"rebuilding needs the base model file {ref} the {caps.name} source loaded; "
                           "pass base_file=")
    request = LoadRequest(ref, source=caps.name, input_size=input_size,  # as request_from_plan made it
                          num_classes=base_classes(caps, num_classes, new_head=True),
                          arch=config.get("architecture") if caps.takes_arch else None)
    base = source.load(request)
    model = attach_head(base.module, spec, num_classes, input_size, base.spec.classifier)
    state = load_file(str(folder / "model.safetensors"))
    model.load_state_dict(state)
    return model
