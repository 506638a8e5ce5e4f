"""Built-in exporters: safetensors + timm config.json, TorchScript (ONNX: ``onnx_exporter``), each checked.

Every exporter works on a float32 CPU copy of the module in eval mode, so the caller's
module keeps its device, dtype and train flags. Every file is written through a temp file
and a rename: an interrupted or failed export never leaves a half file under the final name.

Parity: ``max|exported - pytorch|`` must be at most ``tolerance * max(1, max|pytorch|)``,
i.e. absolute (default 1e-4) for logits below magnitude 1, relative to the largest logit above it.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.atomic import atomic_path, atomic_write_text, check_folder_target
from workbench.errors import WorkbenchError
from workbench.export import ExportResult
from workbench.export_runners import Runner, torch_runner
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

DEFAULT_TOLERANCE = 1e-4
_SOURCE_KEYS = ("url", "file", "hf_hub_id", "hf_hub_filename", "source", "state_dict", "architecture")
_KEEP_NULL = ("pool_size", "first_conv", "classifier")


class SafetensorsExporter:
    """``model.safetensors`` + timm ``config.json`` (+ ``recipe.toml``) in a folder, loadable by timm."""

    name = "safetensors"
    description = "Folder with model.safetensors and a timm-style config.json (timm.create_model can load it)"
    output_kind = "folder"
    suffix = ""

    def export(self, module: "nn.Module", spec: ModelSpec, out: Path, recipe_toml: str | None = None,
               tolerance: float | None = None) -> ExportResult:
        from safetensors.torch import save_file

        out = Path(out)
        check_folder_target(out, "--out")
        model = prepared(module)
        tensors = _unshared_state_dict(model)
        weights, config = out / "model.safetensors", out / "config.json"
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write_text(config, json.dumps(timm_config(model, spec), indent=2, default=_json_default) + "\n")
        paths = [weights, config]
        if recipe_toml is not None:
            atomic_write_text(out / "recipe.toml", recipe_toml)
            paths.append(out / "recipe.toml")
        message = f"wrote {len(tensors)} tensors and config.json for {spec.architecture} to {out}"
        if spec.extra.get("workbench_head"):
            message += ("; a cut model with a new head: timm.create_model cannot rebuild it alone, "
                        "workbench.surgery.rebuild_from_config(folder) does")
        elif spec.architecture.startswith("onnx:"):
            message += ("; timm cannot rebuild an ONNX import: load model.safetensors into the module "
                        "re-imported from the original .onnx file")
        return ExportResult(self.name, paths, None, message)

    def load_for_report(self, paths: list[Path], model: "nn.Module") -> Runner:
        """The written weights loaded back into a copy of the model (strict: every tensor must fit)."""
        from safetensors.torch import load_file

        weights = next(p for p in paths if p.name == "model.safetensors")
        reloaded = copy.deepcopy(model)
        reloaded.load_state_dict(load_file(str(weights)), strict=True)
        return torch_runner(reloaded.eval())


class TorchScriptExporter:
    """A traced TorchScript file with the spec in its ``config.json`` extra file."""

    name = "torchscript"
    description = "TorchScript file (torch.jit.load), with labels and preprocessing in its extra files"
    output_kind = "file"
    suffix = ".pt"

    def export(self, module: "nn.Module", spec: ModelSpec, out: Path, recipe_toml: str | None = None,
               tolerance: float | None = None) -> ExportResult:
        import torch

        out = Path(out)
        tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        model = prepared(module)
        example = random_batch(spec, 2, seed=0)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about constant shapes are checked below
                traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as exc:
            raise WorkbenchError(f"cannot trace {spec.architecture} for TorchScript: {one_line(exc)}") from exc
        extra = {"config.json": json.dumps(_spec_json(spec), default=_json_default)}
        if recipe_toml is not None:
            extra["recipe.toml"] = recipe_toml
        # Serialise in memory first: torch's file writer aborts the whole process (std::terminate)
        # when the disk fills; a Python write fails with a plain OSError that atomic_path reports.
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.save is deprecated": not the user's concern
            torch.jit.save(traced, buffer, _extra_files=extra)
        with atomic_path(out) as tmp:
            tmp.write_bytes(buffer.getbuffer())
            del buffer
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            diff = 0.0
            for batch, seed in ((2, 1), (3, 2)):
                x = random_batch(spec, batch, seed)
                reference = logits(model, x)
                try:
                    with torch.no_grad():
                        got = _first(loaded(x)).numpy()
                except Exception as exc:
                    raise WorkbenchError(f"the traced {spec.architecture} fails on a batch of {batch} "
                                         f"(it hard-codes a shape): {_last_line(exc)}; no file written") from exc
                diff = max(diff, check_parity("TorchScript", spec, reference, got, tolerance))
        return ExportResult(self.name, [out], diff,
                            f"wrote {out} (torch.jit.trace); max abs diff vs PyTorch {diff:.3g} at batch 2 and 3")

    def load_for_report(self, paths: list[Path], model: "nn.Module") -> Runner:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(paths[0]), map_location="cpu")
        return torch_runner(loaded)


def timm_config(model: "nn.Module", spec: ModelSpec) -> dict[str, Any]:
    """``config.json`` as timm's ``save_for_hf`` writes it, from the spec (and the timm model's own cfg)."""
    source = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg = {k: v for k, v in source.items() if k not in _SOURCE_KEYS and (v is not None or k in _KEEP_NULL)}
    if cfg.get("num_classes") != spec.num_classes:
        for key in ("label_names", "label_descriptions", "label_offset"):
            cfg.pop(key, None)
    cfg.pop("label_names", None)  # ours are at the top level, where timm reads them from
    if tuple(cfg.get("input_size", spec.input_size)) != tuple(spec.input_size):
        for key in ("test_input_size", "test_crop_pct", "test_pool_size"):
            cfg.pop(key, None)
        cfg["pool_size"] = None
    classifier = cfg.get("classifier")
    cfg.update(spec.to_pretrained_cfg())
    if spec.classifier is None and classifier is not None:
        cfg["classifier"] = classifier
    elif isinstance(classifier, (list, tuple)) and spec.classifier in classifier:
        # Two-head models (distilled DeiT, LeViT…): timm drops every listed classifier when
        # num_classes changes at reload, so all of them must be named, as save_for_hf does.
        cfg["classifier"] = list(classifier)
    if source:
        cfg["custom_load"] = False  # the export holds a native timm state dict
    config: dict[str, Any] = {"architecture": spec.architecture, "num_classes": spec.num_classes}
    num_features = getattr(model, "num_features", None)
    if isinstance(num_features, int):
        config["num_features"] = num_features
    pool = _global_pool(model)
    if pool:
        config["global_pool"] = pool
    config["label_names"] = label_names(spec)
    args = _timm_model_args(model) if source else None
    if args:
        config["model_args"] = args
    config["pretrained_cfg"] = cfg
    if spec.extra.get("workbench_head"):  # cut + new head: timm.create_model alone cannot rebuild it
        config["workbench"] = {"head": spec.extra["workbench_head"], "note": (
            "timm.create_model cannot rebuild this architecture alone: cut and new head from [head]; "
            "rebuild with workbench.surgery.rebuild_from_config(folder)")}
    return config


def label_names(spec: ModelSpec) -> list[str]:
    """The spec's label names, or ``class_0``.. when it has none (exports always carry names)."""
    if spec.label_names and len(spec.label_names) == spec.num_classes:
        return [str(name) for name in spec.label_names]
    return [f"class_{i}" for i in range(spec.num_classes)]


def _spec_json(spec: ModelSpec) -> dict[str, Any]:
    data = spec.to_dict()
    data["label_names"] = label_names(spec)
    return data


def set_metadata(model: Any, spec: ModelSpec, recipe_toml: str | None) -> None:
    values: dict[str, Any] = {
        "architecture": spec.architecture,
        "label_names": label_names(spec),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "input_size": list(spec.input_size),
        "interpolation": spec.interpolation,
        "crop_pct": spec.crop_pct,
        "crop_mode": spec.crop_mode,
        "num_classes": spec.num_classes,
    }
    props = {prop.key: prop.value for prop in model.metadata_props}
    props.update({key: json.dumps(value) for key, value in values.items()})
    if recipe_toml is not None:
        props["recipe_toml"] = recipe_toml
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


class CandidateFailed(Exception):
    """One ONNX exporter's output was unusable; the next exporter may still work."""


def check_parity(what: str, spec: ModelSpec, reference: "np.ndarray", got: "np.ndarray", tolerance: float,
                  candidate: str | None = None) -> float:
    """Max abs diff of ``got`` vs ``reference``; raises when it is above the tolerance."""
    import numpy as np

    if reference.shape != got.shape:
        problem = f"{what} output has shape {got.shape}, PyTorch {reference.shape}"
    else:
        diff = float(np.max(np.abs(reference.astype(np.float64) - got.astype(np.float64)))) if got.size else 0.0
        scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
        if diff <= tolerance * scale and np.isfinite(diff):
            return diff
        problem = (f"{what} export of {spec.architecture} differs from PyTorch by up to {diff:.3g} "
                   f"(tolerance {tolerance:g} x max(1, |logit| max {scale:.3g}))")
    if candidate is not None:
        raise CandidateFailed(f"{candidate} exporter: {problem}")
    raise WorkbenchError(f"{problem}; no file written")


def prepared(module: "nn.Module") -> "nn.Module":
    """A float32 CPU eval-mode copy: exporting never changes the caller's module."""
    return copy.deepcopy(module).cpu().float().eval()


def _unshared_state_dict(model: "nn.Module") -> dict[str, "torch.Tensor"]:
    """The full state dict with tied tensors cloned (safetensors refuses shared storage; timm wants every key)."""
    tensors: dict[str, "torch.Tensor"] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in model.state_dict().items():
        value = value.detach()
        ident = (value.untyped_storage().data_ptr(), value.untyped_storage().nbytes())
        if ident in seen or not value.is_contiguous():
            value = value.contiguous().clone()
        seen.add(ident)
        tensors[key] = value
    return tensors


def random_batch(spec: ModelSpec, batch: int, seed: int) -> "torch.Tensor":
    import torch

    return torch.randn(batch, *spec.input_size, generator=torch.Generator().manual_seed(seed))


def logits(model: "nn.Module", x: "torch.Tensor") -> "np.ndarray":
    import torch

    with torch.no_grad():
        return _first(model(x)).numpy()


def _first(output: Any) -> "torch.Tensor":
    return output[0] if isinstance(output, (tuple, list)) else output


def _global_pool(model: "nn.Module") -> str | None:
    """The pooling type, read as timm's ``save_for_hf`` reads it (the head's pool first)."""
    head = getattr(model, "head", None)
    for pool in (getattr(head, "global_pool", None), getattr(head, "pool_type", None), getattr(model, "global_pool", None)):
        pool = getattr(pool, "pool_type", pool)
        if isinstance(pool, str):
            return pool
    return None


def _timm_model_args(model: "nn.Module") -> dict[str, Any] | None:
    """timm's recorded reconstruction arguments (newer timm only), when they are JSON-serialisable."""
    from timm.models import get_model_args

    args = get_model_args(model)
    try:
        json.dumps(args)
    except (TypeError, ValueError):  # not JSON-serialisable: the export simply omits them
        return None
    return args


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def _last_line(exc: BaseException) -> str:
    """The message at the end of a TorchScript interpreter traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else type(exc).__name__


def one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
