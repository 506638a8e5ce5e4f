"""Built-in model source: a local checkpoint loaded into a timm architecture.

``.safetensors`` is preferred. ``.pth/.pt/.bin`` pickles load only with
``torch.load(weights_only=True)``: a pickle that needs anything beyond tensors and
plain containers is refused, because unpickling it could run arbitrary code.
A ``config.json`` beside the weights (timm's ``save_for_hf`` format, which our
safetensors export writes) supplies the architecture, class count and labels.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from workbench.backbone import Backbone, LoadRequest
from workbench.errors import ModelLoadError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_ema")


@functools.cache
def _side_models() -> tuple[Any, Any]:
    """pydantic models of the config.json keys we read, built on first use."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field

    class SidePretrainedCfg(BaseModel):
        model_config = ConfigDict(strict=True, extra="allow")
        mean: list[float] | None = None
        std: list[Annotated[float, Field(gt=0)]] | None = None
        input_size: Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=3, max_length=3)] | None = None
        interpolation: str | None = None
        crop_pct: Annotated[float, Field(gt=0, le=1)] | None = None
        crop_mode: str | None = None

    class SideConfig(BaseModel):
        """The keys of timm's config.json that loading reads."""
        model_config = ConfigDict(strict=True, extra="allow")
        architecture: Annotated[str, Field(min_length=1)] | None = None
        num_classes: Annotated[int, Field(ge=1)] | None = None
        label_names: list[str] | None = None
        pretrained_cfg: SidePretrainedCfg | None = None

    return SideConfig, SidePretrainedCfg


class CheckpointSource:
    name = "checkpoint"
    title = "Checkpoints"
    suffixes = SAFE_SUFFIXES + PICKLE_SUFFIXES
    takes_arch = True
    ends_in_logits = True  # a timm architecture
    builds_for_classes = True

    @staticmethod
    def needs_arch(path: Path) -> bool:
        """Whether the weights at ``path`` need their architecture named: no config.json beside them names it."""
        return not path.with_name("config.json").is_file()

    def can_load(self, request: LoadRequest) -> bool:
        return request.path.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES

    def load(self, request: LoadRequest) -> Backbone:
        import timm

        path = request.path
        if not path.is_file():
            raise ModelLoadError(f"file not found: {request.ref}")
        config = read_side_config(path)
        arch = request.arch or config.get("architecture")
        if not arch:
            raise ModelLoadError(f"{path.name}: say which architecture the weights belong to "
                                 "(--arch NAME, or [model] arch = \"NAME\"); no config.json beside it names one")
        from workbench_plugins.timm_source import is_timm_name, spec_from_timm

        if not is_timm_name(arch):
            raise ModelLoadError(f"unknown timm architecture {arch!r} for checkpoint {path.name}")
        state = load_state_dict(path)
        ckpt_classes = _head_classes(state, arch)
        num_classes = request.num_classes or config.get("num_classes") or ckpt_classes
        model = (timm.create_model(arch, pretrained=False, num_classes=num_classes) if num_classes
                 else timm.create_model(arch, pretrained=False))
        notices: list[str] = []
        classifier = _classifier_paths(model)
        if request.num_classes and ckpt_classes and request.num_classes != ckpt_classes:
            head_keys = [k for k in state if any(k.startswith(c + ".") for c in classifier)]
            for k in head_keys:
                del state[k]
            notices.append(f"checkpoint head has {ckpt_classes} classes; replaced it with a new "
                           f"{request.num_classes}-class head ({', '.join(classifier)})")
            _load_into(model, state, arch, path, allow_missing=set(k for k in model.state_dict()
                                                                   if any(k.startswith(c + ".") for c in classifier)))
        else:
            _load_into(model, state, arch, path)
        cast = _cast_tensors(model, state)
        if cast:
            notices.append(f"{len(cast)} tensor(s) in {path.name} were stored as integers and were cast to the "
                           f"model's floating type ({', '.join(cast[:3])}{', ...' if len(cast) > 3 else ''})")
        spec = spec_from_timm(model, LoadRequest(arch, input_size=request.input_size, mean=request.mean,
                                                 std=request.std), pretrained=True)
        _apply_side_config(spec, config)
        return Backbone(model, spec, self.name, str(path), notices, {"weights": str(path), "tensors": len(state)})


def read_side_config(path: Path) -> dict[str, Any]:
    """``config.json`` beside the weights, checked against the fields we read (others are kept as they are)."""
    import pydantic

    config_path = path.with_name("config.json")
    if not config_path.is_file():
        return {}
    try:
        data = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{config_path}: expected a JSON object with architecture, num_classes, ... "
                             f"(timm's config.json), not a {type(data).__name__}")
    try:
        _side_models()[0].model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ModelLoadError(f"{config_path}: {key}: {err['msg'].lower()}, not {err.get('input')!r}") from None
    return data


def load_state_dict(path: Path) -> dict[str, Any]:
    """Tensors from a safetensors file or a weights-only pickle, unwrapped and de-prefixed."""
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name}: not a valid safetensors file ({exc})") from None
    else:
        state = _load_pickle(path)
    return _strip_prefix(_unwrap(state, path), "module.")


def _load_pickle(path: Path) -> Any:
    import pickle
    import zipfile

    import torch

    if not _looks_like_torch_file(path):
        raise ModelLoadError(f"{path.name}: not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                             "pickle; the file is damaged or is some other format)")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        from workbench.pickle_refusal import describe_load_error

        if not zipfile.is_zipfile(path) and not _pickle_stream_parses(path):
            raise ModelLoadError(f"{path.name}: a damaged PyTorch checkpoint (the pickle stream is corrupt)") from None
        raise ModelLoadError(f"refusing to load {path.name}: {describe_load_error(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path.name}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from None
    except (KeyError, IndexError, TypeError, AttributeError, MemoryError, OverflowError) as exc:
        # a damaged pickle stream trips the unpickler in arbitrary places
        raise ModelLoadError(f"{path.name}: a damaged PyTorch checkpoint (the pickle stream is corrupt: "
                             f"{type(exc).__name__})") from None


def _pickle_stream_parses(path: Path) -> bool:
    """Whether a raw pickle file is a well-formed opcode stream (read without running anything)."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            for _ in pickletools.genops(fh):
                pass
    except Exception:  # pickletools raises ValueError on bad opcodes, others on truncation
        return False
    return True


def _looks_like_torch_file(path: Path) -> bool:
    """A torch.save zip archive (even a truncated one), or a pickle stream (protocol 2+ opcode first)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _unwrap(state: Any, path: Path) -> dict[str, Any]:
    import torch

    for _ in range(3):
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
            if inner is None:
                break
            state = inner
    if not isinstance(state, dict) or not state:
        raise ModelLoadError(f"{path.name}: holds no state_dict (expected a mapping of parameter names to tensors)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _classifier_paths(model: Any) -> list[str]:
    cls = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier")
    return list(cls) if isinstance(cls, (list, tuple)) else ([cls] if cls else [])


def _head_classes(state: dict[str, Any], arch: str) -> int | None:
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    names = list(classifier) if isinstance(classifier, (list, tuple)) else ([classifier] if classifier else [])
    for name in names:
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def _load_into(model: Any, state: dict[str, Any], arch: str, path: Path, allow_missing: set[str] | None = None) -> None:
    expected = model.state_dict()
    allow_missing = allow_missing or set()
    missing = [k for k in expected if k not in state and k not in allow_missing]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
                  for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es) ({'; '.join(mismatched[:2])})")
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])})")
        raise ModelLoadError(f"{path.name} does not fit architecture {arch!r}: {', '.join(parts)}")
    model.load_state_dict(state, strict=not allow_missing)


def _cast_tensors(model: Any, state: dict[str, Any]) -> list[str]:
    """Names of checkpoint tensors whose integer dtype load_state_dict silently turned into float."""
    expected = model.state_dict()
    return [f"{k} ({state[k].dtype})".replace("torch.", "") for k in state
            if k in expected and not state[k].is_floating_point() and expected[k].is_floating_point()]


def _apply_side_config(spec: Any, config: dict[str, Any]) -> None:
    if not config:
        return
    labels = config.get("label_names")
    if isinstance(labels, list) and len(labels) == spec.num_classes:
        spec.label_names = [str(x) for x in labels]
    pcfg = config.get("pretrained_cfg") or {}
    for key in ("mean", "std", "input_size"):
        if pcfg.get(key):
            setattr(spec, key, tuple(pcfg[key]))
    for key in ("interpolation", "crop_mode"):
        if pcfg.get(key):
            setattr(spec, key, str(pcfg[key]))
    if pcfg.get("crop_pct"):
        spec.crop_pct = float(pcfg["crop_pct"])
