"""A linear probe at every depth: where do the model's features stop transferring to this data?

One pass of the frozen model over the training and validation images stores each depth's pooled
output (spatial maps: mean over positions; ViT tokens: mean over tokens; vectors as they are), then a
linear probe trains on each depth's features with the plan's optimiser settings. Depths are timm's
``feature_info`` stages (the plan's groups for other models), then the classifier's input: the features a
``probe`` strategy trains on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.looking.inputs import find_module, first_tensor
from workbench.looking.modes import evaluation_mode

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from workbench.data import DataBundle
    from workbench.workspace import Workspace

PRE_LOGITS = "classifier input"


@dataclass
class Depth:
    """One place to cut: the module whose output is probed, and what keeping the model up to it costs."""

    path: str
    label: str
    params_kept: int  # parameters from the input up to and including this module


@dataclass
class DepthResult:
    path: str
    label: str
    width: int
    val_top1: float
    seconds: float  # training this depth's probe (the shared feature pass is reported apart)
    params_kept: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "label": self.label, "width": self.width, "val_top1": self.val_top1,
                "seconds": self.seconds, "params_kept": self.params_kept}


@dataclass
class DepthProbe:
    results: list[DepthResult]
    feature_seconds: float  # the one pass of the frozen model over every image
    images: int

    def to_json(self) -> dict[str, Any]:
        return {"feature_seconds": self.feature_seconds, "images": self.images,
                "depths": [r.to_json() for r in self.results]}


def depths(ws: "Workspace") -> list[Depth]:
    """timm's feature stages (or the plan's groups), then the classifier's input, in forward order."""
    model = ws.backbone.module
    info = getattr(model, "feature_info", None)
    paths: list[str] = []
    if info is not None:
        try:
            paths = [str(stage["module"]) for stage in info]
        except (TypeError, KeyError):
            paths = []
    if not paths:
        paths = [ws.tree.cover_paths(members)[-1] for _, members in ws.tree.stages
                 if members and ws.tree.cover_paths(members)]
    classifier = ws.backbone.spec.classifier
    paths = [p for p in paths if p and p != classifier and find_module(model, p) is not None]
    order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    out = []
    names = [name for name, _ in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    for path in dict.fromkeys(paths):
        own = [order[f"{path}.{n}"] for n, _ in find_module(model, path).named_parameters()]
        last = max(own) if own else -1
        out.append(Depth(path, path, sum(sizes[: last + 1])))
    if classifier:
        head = [i for i, n in enumerate(names) if n.startswith(f"{classifier}.")]
        out.append(Depth(classifier, PRE_LOGITS, sum(sizes[: min(head)]) if head else sum(sizes)))
    if not out:
        raise WorkbenchError("the model has no stages to probe (no timm feature_info, no groups, no classifier)")
    return out


def pooled(output: "torch.Tensor") -> "torch.Tensor":
    """(N, C, h, w) → mean over positions; (N, T, C) tokens → mean over tokens; (N, C) as it is."""
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output.mean(dim=1)
    return output.reshape(output.shape[0], -1)


def extract(model: "nn.Module", places: list[Depth], dataset: Any, batch_size: int,
            cancelled: Callable[[], bool] = lambda: False) -> tuple[list["torch.Tensor"], "torch.Tensor"]:
    """Each depth's pooled features for every item of ``dataset`` (one forward pass per batch), and the labels."""
    import torch

    store: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(places))}
    hooks = []
    for i, place in enumerate(places):
        module = find_module(model, place.path)
        if place.label == PRE_LOGITS:
            def pre(_m: Any, inputs: Any, i: int = i, place: Depth = place) -> None:
                store[i].append(pooled(_tensor(inputs, place).detach().float()))
            hooks.append(module.register_forward_pre_hook(pre))
        else:
            def post(_m: Any, _inputs: Any, output: Any, i: int = i, place: Depth = place) -> None:
                store[i].append(pooled(_tensor(output, place).detach().float()))
            hooks.append(module.register_forward_hook(post))
    labels: list[torch.Tensor] = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    try:
        with evaluation_mode(model), torch.inference_mode():
            for images, targets in loader:
                if cancelled():
                    raise WorkbenchError("probe by depth cancelled")
                model(images)
                labels.append(torch.as_tensor(targets))
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(store[i]) for i in range(len(places))], torch.cat(labels)


def _tensor(value: Any, place: Depth) -> "torch.Tensor":
    tensor = first_tensor(value)
    if tensor is None:
        raise WorkbenchError(f"{place.path} gives no tensor to probe")
    return tensor


def train_probe(train_x: "torch.Tensor", train_y: "torch.Tensor", val_x: "torch.Tensor", val_y: "torch.Tensor",
                classes: int, settings: Any, epochs: int) -> float:
    """Validation top-1 of a linear probe trained with the plan's optimiser, LR, weight decay and batch size."""
    import torch

    generator = torch.Generator().manual_seed(settings.seed)
    probe = torch.nn.Linear(train_x.shape[1], classes)
    if settings.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(probe.parameters(), lr=settings.lr, momentum=settings.momentum,
                                                     weight_decay=settings.weight_decay)
    else:
        opt = torch.optim.AdamW(probe.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = epochs * -(-len(train_x) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if settings.scheduler != "constant" else None
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            opt.zero_grad()
            loss_fn(probe(train_x[batch]), train_y[batch]).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
    with torch.no_grad():
        return float((probe(val_x).argmax(dim=1) == val_y).float().mean())


def probe_by_depth(ws: "Workspace", data: "DataBundle", epochs: int | None = None,
                   progress: Callable[[str], None] = lambda _m: None,
                   cancelled: Callable[[], bool] = lambda: False) -> DepthProbe:
    """Validation top-1 of a linear probe on each depth's pooled features, from one pass of the frozen model."""
    import torch

    if data.val is None or len(data.val) == 0:
        raise WorkbenchError("probe by depth needs validation images: set [data] val_split or a val folder")
    settings = ws.plan.train
    epochs = epochs or settings.epochs
    if epochs < 1:
        raise WorkbenchError(f"--epochs must be at least 1, not {epochs}")
    places = depths(ws)
    model = ws.backbone.module
    torch.manual_seed(settings.seed)
    start = time.perf_counter()
    progress(f"one pass over {len(data.train) + len(data.val):,} images for {len(places)} depths")
    train_features, train_y = extract(model, places, data.train, settings.batch_size, cancelled)
    val_features, val_y = extract(model, places, data.val, settings.batch_size, cancelled)
    feature_seconds = time.perf_counter() - start
    results = []
    for place, train_x, val_x in zip(places, train_features, val_features):
        if cancelled():
            raise WorkbenchError("probe by depth cancelled")
        progress(f"probe at {place.label} ({train_x.shape[1]} features)")
        t = time.perf_counter()
        top1 = train_probe(train_x, train_y, val_x, val_y, len(data.classes), settings, epochs)
        results.append(DepthResult(place.path, place.label, int(train_x.shape[1]), top1, time.perf_counter() - t,
                                   place.params_kept))
    return DepthProbe(results, feature_seconds, len(data.train) + len(data.val))
