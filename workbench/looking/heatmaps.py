"""Class heatmaps (CAM) with pytorch-grad-cam: where the network looks for a class.

pytorch-grad-cam (``grad-cam`` on PyPI) is used rather than captum or torchcam: it is maintained, has
Grad-CAM and gradient-free methods (EigenCAM, ScoreCAM) behind one call, takes a reshape transform
for ViT tokens, and returns maps already upsampled to the input. Frozen layers pass gradients to their
inputs but have none themselves, so the input is made to require a gradient: Grad-CAM then works on a
frozen trunk and on ONNX imports, and no parameter's ``requires_grad`` is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.looking.activations import capture
from workbench.looking.inputs import find_module, first_tensor, last_spatial_layer, prefix_tokens, spatial

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

# Method name → (pytorch_grad_cam class name, whether it depends on the class). EigenCAM is the gradient-free
# one (the first principal component of the layer's maps: one forward pass). ScoreCAM is left out: it runs
# one forward pass per channel (1,280 for EfficientNet-Lite0's last layer: 6 minutes on a 2-core CPU).
METHODS = {
    "gradcam": ("GradCAM", True),
    "gradcam++": ("GradCAMPlusPlus", True),
    "eigencam": ("EigenCAM", False),
}


@dataclass
class Heatmap:
    """A class heatmap over the model's input crop: ``values`` is H×W in [0, 1]."""

    method: str
    layer: str
    class_index: int
    label: str
    score: float  # the class's probability for this image
    values: "np.ndarray"
    layer_grid: tuple[int, int]  # the layer's own resolution (the map is upsampled from it)

    def mass(self, rows: slice = slice(None), cols: slice = slice(None)) -> float:
        """Share of the heatmap's total inside the given rows/columns."""
        total = float(self.values.sum())
        return float(self.values[rows, cols].sum()) / total if total > 0 else 0.0

    def to_json(self, decimals: int = 3) -> dict[str, Any]:
        h, w = self.values.shape
        return {"method": self.method, "layer": self.layer, "class": self.class_index, "label": self.label,
                "score": self.score, "layer_grid": list(self.layer_grid), "grid": [h, w],
                "covers": "the model's input: the image resized and centre-cropped as the model is fed",
                "heatmap": [[round(float(v), decimals) for v in row] for row in self.values]}


class _Logits:
    """The model's output as one (N, classes) tensor, whatever container its forward returns."""

    def __init__(self, model: "nn.Module") -> None:
        import torch.nn as nn

        class Wrapped(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: Any) -> Any:
                return first_tensor(self.inner(x))

        self.module = Wrapped(model)


@contextmanager
def _untouched(model: "nn.Module") -> Iterator[None]:
    """Train/eval modes and existing parameter gradients are as they were afterwards (CAM calls eval/zero_grad)."""
    from workbench.looking.modes import LOOK_LOCK

    with LOOK_LOCK:  # see modes.py: two threads' save/restore of one model's modes must not interleave
        modes = [(m, m.training) for m in model.modules()]
        grads = [(p, p.grad) for p in model.parameters()]
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode
            for p, g in grads:
                p.grad = g


def class_heatmap(model: "nn.Module", inputs: "torch.Tensor", *, layer: str | None = None,
                  class_index: int | None = None, method: str = "gradcam",
                  label_names: list[str] | None = None) -> Heatmap:
    """The ``method`` heatmap of ``class_index`` (default: the predicted class) at ``layer`` (default: last spatial)."""
    import numpy as np
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise WorkbenchError(f"unknown heatmap method {method!r}; choose one of {', '.join(METHODS)}")
    inputs = inputs[:1].detach()
    with _untouched(model):
        model.eval()
        with torch.no_grad():
            probs = _probabilities(model(inputs))
        n_classes = probs.shape[1]
        if class_index is None:
            class_index = int(probs[0].argmax())
        elif not 0 <= class_index < n_classes:
            raise WorkbenchError(f"class {class_index} is out of range: the model has {n_classes} classes "
                                 f"(0..{n_classes - 1})")
        layer = layer if layer is not None else last_spatial_layer(model, inputs)
        target = find_module(model, layer)
        output = capture(model, layer, inputs)
        maps = spatial(output, model)
        if maps is None:
            last = last_spatial_layer(model, inputs)
            raise WorkbenchError(f"layer {layer!r} outputs {tuple(output.shape)}, not a spatial map (it comes after "
                                 f"global pooling or flattening); a heatmap needs a spatial layer such as {last!r}")
        grid = (int(maps.shape[-2]), int(maps.shape[-1]))
        reshape = None if output.ndim == 4 else _tokens_to_grid(prefix_tokens(model))
        wrapped = _Logits(model).module
        cls = getattr(pytorch_grad_cam, METHODS[method][0])
        with cls(model=wrapped, target_layers=[target], reshape_transform=reshape) as cam:
            values = cam(input_tensor=inputs.clone().requires_grad_(True),
                         targets=[ClassifierOutputTarget(class_index)])[0]
    values = np.nan_to_num(np.asarray(values, dtype=np.float32)).clip(0.0, 1.0)
    names = label_names if label_names and len(label_names) == n_classes else None
    label = names[class_index] if names else str(class_index)
    return Heatmap(method, layer, class_index, label, float(probs[0, class_index]), values, grid)


def _probabilities(output: Any) -> "torch.Tensor":
    from workbench.predict import to_probabilities

    return to_probabilities(first_tensor(output) if not hasattr(output, "ndim") else output)


def _tokens_to_grid(prefix: int) -> Any:
    from workbench.looking.inputs import token_grid

    def reshape(tokens: "torch.Tensor") -> "torch.Tensor":
        grid = token_grid(tokens, prefix)
        if grid is None:
            raise WorkbenchError(f"tokens of shape {tuple(tokens.shape)} do not form a square patch grid")
        return grid

    return reshape
