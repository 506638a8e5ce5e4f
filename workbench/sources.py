"""Loading a backbone through the model-source plugins."""

from __future__ import annotations

from typing import Any

from workbench.backbone import Backbone, LoadRequest
from workbench.errors import ModelLoadError
from workbench.plugins import MODEL_SOURCES, PluginRegistry, SourceReportText, registry

# Order in which sources are asked when the request names none: files first
# (their suffix decides), then timm names.
_AUTO_ORDER = ("onnx", "checkpoint", "timm")


def load_backbone(request: LoadRequest, plugins: PluginRegistry | None = None) -> Backbone:
    """Load the model a request names, with the source it names or the first that accepts it."""
    reg = plugins or registry()
    if request.source:
        return reg.get(MODEL_SOURCES, request.source).load(request)
    sources = reg.plugins(MODEL_SOURCES)
    ordered = [sources[n] for n in _AUTO_ORDER if n in sources]
    ordered += [s for n, s in sources.items() if n not in _AUTO_ORDER]
    for source in ordered:
        if source.can_load(request):
            return source.load(request)
    if request.path.suffix:
        if not request.path.exists():
            raise ModelLoadError(f"file not found: {request.ref}")
        suffixes = ", ".join(sorted(reg.suffix_map()))
        raise ModelLoadError(f"no model source can read {request.ref!r} (files it can open: {suffixes}; "
                             "or a timm model name)")
    raise ModelLoadError(f"{request.ref!r} is neither a file nor a timm model name (see `timm.list_models()`)")


def describe_source_report(source: str, report: dict[str, Any] | None,
                           plugins: PluginRegistry | None = None) -> SourceReportText | None:
    """How the model source that loaded a backbone words its import report; None when it has nothing to say."""
    if not report:
        return None
    plugin = (plugins or registry()).plugins(MODEL_SOURCES).get(source)
    describe = getattr(plugin, "describe_report", None)
    return describe(report) if describe is not None else None
