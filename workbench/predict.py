"""Classify images with a model source or a run's trained weights: top-K labels with probabilities.

Qt-free; ``workbench predict`` (workbench/cli/predict.py) is its command-line face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import torch
    import torch.nn as nn
    from PIL import Image

BATCH = 16


@dataclass
class Predictor:
    """A model in eval mode, the spec that says how to feed it, and where its weights came from."""

    module: "nn.Module"
    spec: ModelSpec
    weights: str
    notices: list[str] = field(default_factory=list)


@dataclass
class TopClass:
    index: int
    label: str
    prob: float

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "prob": self.prob}


@dataclass
class Prediction:
    image: str
    top: list[TopClass]

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "top": [t.to_json() for t in self.top]}


def load_predictor(source: str, pretrained: bool = False, arch: str | None = None,
                   input_size: tuple[int, int, int] | None = None) -> Predictor:
    """The model ``source`` names: a run folder, a project .toml, a checkpoint, an ONNX file or a timm name."""
    path = Path(source).expanduser()
    if path.is_dir():
        if pretrained or arch or input_size:
            raise WorkbenchError(f"{source} is a run folder: its own weights and input size are used "
                                 "(drop --pretrained/--arch/--input-size)")
        from workbench.run_loading import load_run

        trained = load_run(path)
        return Predictor(trained.module.eval(), trained.spec, f"trained weights of run {path.name}")
    if path.suffix.lower() == ".toml":
        if not path.is_file():
            raise WorkbenchError(f"project file not found: {source}")
        if arch or input_size:
            raise WorkbenchError(f"{source} is a project: its [model] section decides the architecture "
                                 "and input size (drop --arch/--input-size)")
        from workbench.project import load_project
        from workbench.workspace import Workspace

        plan = load_project(path)
        if pretrained:
            plan.model.pretrained = True
        ws = Workspace.from_plan(plan, path)
        backbone = ws.backbone
    else:
        from workbench.backbone import LoadRequest
        from workbench.sources import load_backbone

        request = LoadRequest(source, arch=arch, pretrained=pretrained, input_size=input_size)
        backbone = load_backbone(request)
    notices = list(backbone.notices)
    if backbone.weights == "random init":
        from workbench.sources import capabilities

        offers = capabilities(backbone.source).pretrained_weights
        notices.append(f"{backbone.name} has random (untrained) weights, so its predictions mean nothing"
                       + ("; add --pretrained for trained weights" if offers and not pretrained else ""))
    return Predictor(backbone.module.eval(), backbone.spec, backbone.weights, notices)


def check_images(images: list[str]) -> list[Path]:
    """Every image must be an existing file; one clear error for the first that is not."""
    if not images:
        raise WorkbenchError("give at least one image to classify")
    paths = []
    for name in images:
        path = Path(name).expanduser()
        if not path.exists():
            raise WorkbenchError(f"image not found: {name}")
        if not path.is_file():
            raise WorkbenchError(f"{name} is a folder, not an image file")
        paths.append(path)
    return paths


def read_image(path: Path, channels: int) -> "Image.Image":
    """The file decoded upright as RGB (or L for one-channel models); ``WorkbenchError`` if it does not decode."""
    from workbench.data import Item

    img = Item(label=0, name=str(path), path=path).load()
    return img.convert("L") if channels == 1 else img


def predict(predictor: Predictor, images: list[str], top: int = 5) -> list[Prediction]:
    """Top-``top`` classes for each image, in the order given; nothing is returned unless all succeed."""
    import torch

    if top < 1:
        raise WorkbenchError(f"--top must be at least 1, not {top}")
    paths = check_images(images)
    spec = predictor.spec
    channels = spec.input_size[0]
    if channels not in (1, 3):
        raise WorkbenchError(f"the model takes {channels}-channel input; only grayscale (1) or RGB (3) "
                             "images can be classified")
    from workbench.data import build_transform

    transform = build_transform(_per_channel(spec), train=False, augment=False)
    results: list[Prediction] = []
    for start in range(0, len(paths), BATCH):
        chunk = paths[start:start + BATCH]
        batch = torch.stack([transform(read_image(p, channels)) for p in chunk])
        with torch.inference_mode():
            output = predictor.module(batch)
        probs = to_probabilities(output)
        for name, row in zip(images[start:start + BATCH], probs):
            if not bool(torch.isfinite(row).all()):
                raise WorkbenchError(f"the model gives non-finite scores for {name} ({predictor.weights} "
                                     "contain NaN or infinite values, or overflow on this input)")
            results.append(Prediction(name, top_classes(row, top, spec.label_names)))
    return results


def _per_channel(spec: ModelSpec) -> ModelSpec:
    """``spec`` with one mean/std value per input channel (a one-channel model given RGB defaults: their average)."""
    from dataclasses import replace

    channels = spec.input_size[0]
    if len(spec.mean) == channels and len(spec.std) == channels:
        return spec
    if channels == 1:
        return replace(spec, mean=(sum(spec.mean) / len(spec.mean),), std=(sum(spec.std) / len(spec.std),))
    raise WorkbenchError(f"the model takes {channels}-channel input but its preprocessing has "
                         f"{len(spec.mean)} mean and {len(spec.std)} std values")


def to_probabilities(output: Any) -> "torch.Tensor":
    """Class probabilities from the model's output: softmax of logits, or the output itself if it already is one."""
    import torch

    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise WorkbenchError(f"the model's output is {shape}, not class scores of shape (N, classes): "
                             "predict needs a classifier")
    output = output.float()
    finite = torch.isfinite(output).all(dim=1, keepdim=True)
    # A file that still ends in Softmax: its rows are probabilities already (softmax again would flatten them).
    already = bool(finite.all()) and bool((output >= 0).all()) and bool(
        torch.allclose(output.sum(dim=1), torch.ones(len(output)), atol=1e-4))
    return output if already else output.softmax(dim=1)


def top_classes(probs: "torch.Tensor", k: int, label_names: list[str] | None) -> list[TopClass]:
    """The ``k`` most probable classes (all of them when there are fewer), most probable first."""
    import torch

    values, indices = torch.topk(probs, min(k, probs.numel()))
    names = label_names if label_names and len(label_names) == probs.numel() else None
    return [TopClass(int(i), names[int(i)] if names else str(int(i)), float(v))
            for v, i in zip(values.tolist(), indices.tolist())]


def format_text(predictions: list[Prediction]) -> str:
    """One block per image: its name, then rank, probability, label and index."""
    blocks = []
    for p in predictions:
        lines = [p.image]
        for rank, t in enumerate(p.top, 1):
            index = "" if t.label == str(t.index) else f"  (class {t.index})"
            lines.append(f"  {rank}. {t.prob * 100:6.2f}%  {t.label}{index}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
