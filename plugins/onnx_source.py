"""The built-in ONNX model source: ``workbench inspect model.onnx``."""

from __future__ import annotations

import json
from typing import Any

from workbench.backbone import Backbone, LoadRequest
from workbench.plugins import SourceReportText
from workbench.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec


class OnnxSource:
    """Loads ``.onnx`` files as trainable PyTorch modules (via onnx2torch, checked with onnxruntime)."""

    name = "onnx"
    title = "ONNX models"
    suffixes = (".onnx",)  # the file fixes the output: a detector's map or probabilities are checked before training

    def can_load(self, request: LoadRequest) -> bool:
        return request.path.suffix.lower() == ".onnx"

    def describe_report(self, report: dict[str, Any]) -> SourceReportText:
        """The import report ``load`` filled in: format versions, what the rewrite passes did, parity."""
        lines = [f"{key}: {report[key]}" for key in ("ir_version", "opset", "input_layout", "batchnorm",
                                                     "trainable_tensors", "trainable_params", "parity_max_abs_diff")
                 if key in report]
        if report.get("op_types"):
            lines.append("op_types: " + ", ".join(f"{k}×{v}" for k, v in sorted(report["op_types"].items())))
        lines += [f"pass {p.get('name')}: max abs diff {p.get('max_abs_diff')}" for p in report.get("passes", [])]
        lines += [f"constant buffer: {b}" for b in report.get("constant_buffers", [])]
        facts = [f"{key.replace('_', ' ')} {report[key]}" for key in
                 ("opset", "trainable_tensors", "trainable_params", "parity_max_abs_diff") if key in report]
        return SourceReportText("ONNX import", lines, facts)

    def load(self, request: LoadRequest) -> Backbone:
        from workbench_plugins.onnx_import import import_onnx

        path = request.path
        result = import_onnx(path, input_size=request.input_size, num_classes=request.num_classes)
        notices = list(result.notices)
        meta = result.metadata

        mean = _meta_floats(meta, "mean", notices)
        std = _meta_floats(meta, "std", notices)
        if request.mean is not None and request.std is not None:
            mean, std = tuple(request.mean), tuple(request.std)
        elif request.mean is not None or request.std is not None:
            mean = tuple(request.mean) if request.mean is not None else mean
            std = tuple(request.std) if request.std is not None else std
        if (mean is None or std is None) and len(result.input_size) == 1:
            # Feature vectors (N, F): no normalisation unless asked for ([data] standardize, [model] mean/std).
            mean = mean or (0.0,) * result.input_size[0]
            std = std or (1.0,) * result.input_size[0]
        if mean is None or std is None:
            notices.append("no mean/std in the request or the file's metadata; using ImageNet defaults")
            mean = mean or IMAGENET_MEAN
            std = std or IMAGENET_STD

        labels = _meta_json(meta, "label_names", notices)
        if not (isinstance(labels, list) and len(labels) == result.num_classes):
            if labels is not None and request.num_classes is None:
                notices.append(f"ignored label_names in the file: {len(labels) if isinstance(labels, list) else 'not a list'} names for {result.num_classes} classes")
            labels = None
        interpolation = _meta_json(meta, "interpolation", notices)
        crop_pct = _meta_json(meta, "crop_pct", notices)
        extra: dict[str, Any] = {}
        if isinstance(interpolation, str):
            extra["interpolation"] = interpolation
        if isinstance(crop_pct, (int, float)):
            extra["crop_pct"] = float(crop_pct)
        spec = ModelSpec(
            architecture=f"onnx:{path.stem}",
            num_classes=result.num_classes,
            input_size=result.input_size,
            mean=mean,
            std=std,
            classifier=result.classifier,
            label_names=[str(label) for label in labels] if labels else None,
            **extra,
        )
        return Backbone(module=result.module, spec=spec, source=self.name, ref=request.ref, notices=notices, report=result.report)


def _meta_json(meta: dict[str, str], key: str, notices: list[str]) -> Any:
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except ValueError:
        if key == "interpolation":
            return meta[key]  # a bare string is fine here
        notices.append(f"ignored metadata {key!r}: not valid JSON")
        return None


def _meta_floats(meta: dict[str, str], key: str, notices: list[str]) -> tuple[float, ...] | None:
    value = _meta_json(meta, key, notices)
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    notices.append(f"ignored metadata {key!r}: expected a list of numbers")
    return None
