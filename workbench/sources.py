"""Loading a backbone through the model-source plugins, and asking them what they can do.

Callers ask a source's capabilities (:class:`~workbench.plugins.SourceCapabilities`), never its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.backbone import Backbone, LoadRequest
from workbench.errors import ModelLoadError
from workbench.plugins import MODEL_SOURCES, PluginRegistry, SourceCapabilities, SourceReportText, registry


def capabilities(source: str, plugins: PluginRegistry | None = None) -> SourceCapabilities:
    """What the model source named ``source`` can do.

    A name no installed source has is a ``Backbone`` built by hand in code: it takes no files, and its
    module is taken to end in logits, as its author built it.
    """
    for caps in (plugins or registry()).model_sources():
        if caps.name == source:
            return caps
    return SourceCapabilities(name=source, ends_in_logits=True)


def load_backbone(request: LoadRequest, plugins: PluginRegistry | None = None) -> Backbone:
    """Load the model a request names, with the source it names or the first that accepts it."""
    reg = plugins or registry()
    return reg.get(MODEL_SOURCES, source_for(request, reg)).load(request)


def source_for(request: LoadRequest, plugins: PluginRegistry | None = None) -> str:
    """The source that loads ``request``: the one it names, else the first whose ``can_load`` accepts it.

    Sources that declare the file's suffix are asked first, then the other file sources, then those that
    take names. Weights named with an architecture (``--arch``) go to a source that takes one.
    """
    if request.source:
        return request.source
    reg = plugins or registry()
    suffix = request.path.suffix.lower()
    caps = reg.model_sources()
    ordered = ([c for c in caps if suffix and suffix in c.suffixes]
               + [c for c in caps if c.takes_files and suffix not in c.suffixes]
               + [c for c in caps if not c.takes_files])
    if request.arch and suffix:
        with_arch = [c for c in ordered if c.takes_arch]
        if with_arch:
            return with_arch[0].name
    sources = reg.plugins(MODEL_SOURCES)
    for c in ordered:
        if sources[c.name].can_load(request):
            return c.name
    if suffix:
        if not request.path.exists():
            raise ModelLoadError(f"file not found: {request.ref}")
        suffixes = ", ".join(sorted(reg.suffix_map()))
        raise ModelLoadError(f"no model source can read {request.ref!r} (files it can open: {suffixes}; "
                             "or a model name)")
    named = ", ".join(c.name for c in caps if c.takes_names) or "none installed"
    raise ModelLoadError(f"{request.ref!r} is neither a file nor a known model name (sources that take names: {named})")


def model_catalogue(plugins: PluginRegistry | None = None) -> dict[str, str]:
    """Every model name the sources that take names offer -> the source offering it (the first one wins)."""
    reg = plugins or registry()
    found: dict[str, str] = {}
    for caps in reg.model_sources():
        if caps.takes_names:
            for name in reg.plugins(MODEL_SOURCES)[caps.name].model_names():
                found.setdefault(str(name), caps.name)
    return found


def pretrained_availability(source: str, name: str, plugins: PluginRegistry | None = None) -> str:
    """'installed', 'cached', 'remote' or 'none': whether pretrained weights for ``name`` can be had."""
    reg = plugins or registry()
    if not capabilities(source, reg).pretrained_weights:
        return "none"
    ask = getattr(reg.plugins(MODEL_SOURCES)[source], "pretrained_availability", None)
    return str(ask(name)) if ask is not None else "remote"


def needs_arch(source: str, path: str | Path, plugins: PluginRegistry | None = None) -> bool:
    """Whether the file at ``path`` needs its architecture named (a source that takes one says when)."""
    reg = plugins or registry()
    if not capabilities(source, reg).takes_arch:
        return False
    ask = getattr(reg.plugins(MODEL_SOURCES)[source], "needs_arch", None)
    return bool(ask(Path(path))) if ask is not None else True


def describe_source_report(source: str, report: dict[str, Any] | None,
                           plugins: PluginRegistry | None = None) -> SourceReportText | None:
    """How the model source that loaded a backbone words its import report; None when it has nothing to say."""
    if not report:
        return None
    plugin = (plugins or registry()).plugins(MODEL_SOURCES).get(source)
    describe = getattr(plugin, "describe_report", None)
    return describe(report) if describe is not None else None
