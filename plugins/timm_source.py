"""Built-in model source: any architecture in ``timm.list_models()``."""

from __future__ import annotations

import difflib
import os
from typing import Any, cast

from workbench.backbone import Backbone, LoadRequest
from workbench.errors import ModelLoadError
from workbench.spec import ModelSpec

# Keep a dead network from stalling a load: fail fast, then fall back to random init.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")


class TimmSource:
    name = "timm"
    title = "timm models"
    suffixes: tuple[str, ...] = ()
    takes_names = True
    pretrained_weights = True
    ends_in_logits = True
    builds_for_classes = True

    @staticmethod
    def model_names() -> list[str]:
        """Every architecture timm can build (imports timm: call it off the GUI thread)."""
        import timm

        return list(timm.list_models())

    @staticmethod
    def pretrained_availability(name: str) -> str:
        """'cached', 'remote' or 'none' (used by the GUI's model picker)."""
        return pretrained_availability(name)

    def can_load(self, request: LoadRequest) -> bool:
        return not request.path.suffix or is_timm_name(request.ref)

    def load(self, request: LoadRequest) -> Backbone:
        import timm

        name = request.ref
        if not is_timm_name(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelLoadError(f"unknown timm model {name!r}{hint}")
        kwargs: dict[str, Any] = {}
        if request.num_classes is not None:
            kwargs["num_classes"] = request.num_classes
        kwargs.update(_size_kwargs(name, request.input_size))
        notices: list[str] = []
        try:
            model = _load_pretrained(name, kwargs, notices) if request.pretrained else None
            pretrained = model is not None
            if model is None:
                model = timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as exc:
            size = request.input_size
            if "img_size" not in kwargs or size is None:
                raise
            raise ModelLoadError(f"{name} only takes {size[1]}x{size[2]} inputs "
                                 f"it was built for; it does not accept another input_size ({exc})") from None
        spec = spec_from_timm(model, request, pretrained)
        if pretrained and spec.num_classes == 1000 and not spec.label_names:
            spec.label_names = imagenet_label_names()
        return Backbone(model, spec, self.name, name, notices)


def imagenet_label_names() -> list[str]:
    """The 1,000 ImageNet-1k class names ("tabby, tabby cat", …), from timm's bundled metadata."""
    from timm.data import ImageNetInfo

    return [str(label) for label in ImageNetInfo().label_descriptions()]


def _size_kwargs(name: str, input_size: tuple[int, int, int] | None) -> dict[str, Any]:
    """``img_size`` for models built for one size (ViTs), so ``input_size`` rebuilds them; channels must match."""
    cfg = _pretrained_cfg(name)
    default = tuple(getattr(cfg, "input_size", None) or ())
    if input_size is None or len(default) != 3:
        return {}
    if input_size[0] != default[0]:
        raise ModelLoadError(f"input_size {list(input_size)} has {input_size[0]} channel(s) but {name} takes "
                             f"{default[0]}; use input_size = [{default[0]}, {input_size[1]}, {input_size[2]}]")
    if getattr(cfg, "fixed_input_size", False) and tuple(input_size[1:]) != default[1:]:
        return {"img_size": tuple(input_size[1:])}
    return {}


def is_timm_name(name: str) -> bool:
    import timm

    arch = name.split(".")[0]
    return bool(arch) and timm.is_model(arch)


def spec_from_timm(model: Any, request: LoadRequest, pretrained: bool) -> ModelSpec:
    """ModelSpec from a timm model's pretrained_cfg and resolved data config."""
    import timm

    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    data = timm.data.resolve_model_data_config(model)
    classifier = cfg.get("classifier")
    classifiers = list(classifier) if isinstance(classifier, (tuple, list)) else ([classifier] if classifier else [])
    modules = dict(model.named_modules())
    classifiers = [c for c in classifiers if c in modules and any(True for _ in modules[c].parameters())]
    return ModelSpec(
        architecture=cfg.get("architecture") or request.ref.split(".")[0],
        num_classes=int(getattr(model, "num_classes", cfg.get("num_classes", 0)) or 0),
        input_size=tuple(request.input_size or data["input_size"]),
        mean=tuple(request.mean or data["mean"]),
        std=tuple(request.std or data["std"]),
        interpolation=data.get("interpolation", "bicubic"),
        crop_pct=float(data.get("crop_pct", 0.875)),
        crop_mode=data.get("crop_mode", "center"),
        classifier=classifiers[0] if classifiers else None,
        pretrained=pretrained,
        extra={"classifiers": classifiers, "fixed_input_size": bool(cfg.get("fixed_input_size", False)),
               "tag": cfg.get("tag")},
    )


def _load_pretrained(name: str, kwargs: dict[str, Any], notices: list[str]) -> Any | None:
    """The model with pretrained weights, or None with one notice saying why not.

    Cached weights load from their file without touching the network; otherwise a quick
    reachability probe comes first, so an offline machine falls back at once instead of
    sitting through the hub's retries.
    """
    import timm

    from workbench.weights import provider_for

    provider = provider_for(name)
    if provider is not None:  # weights that ship inside an installed package: no network, no cache
        model = timm.create_model(name, pretrained=False)
        model.load_state_dict(provider.state_dict(model))
        if "num_classes" in kwargs and kwargs["num_classes"] != model.num_classes:
            cast(Any, model).reset_classifier(kwargs["num_classes"])
            notices.append(f"pretrained weights from the installed package {provider.name}; new "
                           f"{kwargs['num_classes']}-class head (random init)")
        else:
            notices.append(f"pretrained weights from the installed package {provider.name}")
        return model
    cfg = _pretrained_cfg(name)
    if cfg is None:
        notices.append(f"no pretrained weights are published for {name}; continuing with random init")
        return None
    cached = _cached_weights(cfg)
    try:
        if cached is not None:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=cached), **kwargs)
        host = _weights_host(cfg)
        if not _reachable(host):
            notices.append(f"pretrained weights for {name} are not cached and {host} is unreachable; "
                           "continuing with random init")
            return None
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        notices.append(f"pretrained weights for {name} could not be loaded ({reason}); continuing with random init")
        return None


def pretrained_availability(name: str) -> str:
    """'installed' (a package ships them), 'cached', 'remote' (published, not here) or 'none'."""
    from workbench.weights import provider_for

    if provider_for(name) is not None:
        return "installed"
    cfg = _pretrained_cfg(name)
    if cfg is None:
        return "none"
    if _cached_weights(cfg) is not None:
        return "cached"
    return "remote" if getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) else "none"


def _pretrained_cfg(name: str) -> Any | None:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name)
    except Exception:
        return None


def _cached_weights(cfg: Any) -> str | None:
    """Path of the weights file if it is already in the Hugging Face or torch hub cache."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str):
                    return found
        except Exception:
            pass
    url = getattr(cfg, "url", None)
    if url:
        import torch

        candidate = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url.split("?")[0]))
        if os.path.isfile(candidate):
            return candidate
    return None


def _weights_host(cfg: Any) -> str:
    from urllib.parse import urlparse

    if getattr(cfg, "hf_hub_id", None):
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return urlparse(getattr(cfg, "url", "") or "").hostname or "the weights server"


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` (no name → no)."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
