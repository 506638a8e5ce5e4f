"""Plugin discovery through entry points: lazy, validated, and isolated.

Built-in plugins live in the top-level ``plugins`` package and are registered in
``pyproject.toml`` exactly as a third-party distribution registers its own. A plugin
that fails to import or does not have the expected shape is reported and skipped;
it never takes the application down.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from workbench.backbone import Backbone, LoadRequest
    from workbench.export import ExportResult
    from workbench.layer_tree import LayerTree
    from workbench.plan import FinetunePlan

MODEL_SOURCES = "workbench.model_sources"
DATASETS = "workbench.datasets"
EXPORTERS = "workbench.exporters"
WEIGHTS = "workbench.weights"  # pretrained weights shipped inside an installed package
STRATEGIES = "workbench.strategies"  # fine-tuning strategies for `workbench compare` (workbench.strategies)
CALLBACKS = "workbench.callbacks"  # training callbacks a recipe names in [train] callbacks



@runtime_checkable
class ModelSource(Protocol):
    """A ``workbench.model_sources`` plugin.

    Optional: the capabilities :class:`SourceCapabilities` lists (what the core and the window ask, never the
    source's name), ``model_names()`` and ``pretrained_availability(name)`` for a source that takes names,
    ``needs_arch(path)`` for one that takes an architecture, and ``describe_report(report) -> SourceReportText``,
    which words the ``Backbone.report`` its ``load`` filled in for ``workbench inspect`` and the GUI.
    """

    name: str

    def can_load(self, request: LoadRequest) -> bool: ...

    def load(self, request: LoadRequest) -> Backbone: ...


@dataclass(frozen=True)
class SourceReportText:
    """How a model source words its import report: a titled block of lines, and a few facts for one line."""

    title: str
    lines: list[str]
    facts: list[str]


@dataclass(frozen=True)
class SourceCapabilities:
    """What a model source declares it can do (class attributes of the plugin; these are the defaults)."""

    name: str
    title: str = ""  # what its models are called in a file dialog ("ONNX models"); the name when empty
    suffixes: tuple[str, ...] = ()  # the files it opens (lower case, with the dot); none: it takes no files
    takes_names: bool = False  # loads models by name from a catalogue (``model_names()``), e.g. timm's registry
    takes_arch: bool = False  # its files hold weights for an architecture named apart (``--arch``, ``[model] arch``)
    pretrained_weights: bool = False  # can load published pretrained weights (``--pretrained``)
    ends_in_logits: bool = False  # its models always end in class logits (others are checked before training)
    builds_for_classes: bool = False  # builds the model for a class count; else a class count replaces the
    # file's own classifier, which a new [head] cuts off anyway (so it is not asked for one then)

    @property
    def takes_files(self) -> bool:
        """Whether ``[model] name`` is a file path for this source (resolved against the project's folder)."""
        return bool(self.suffixes)

    @property
    def file_filter(self) -> str:
        """A file dialog filter for its files, e.g. ``"ONNX models (*.onnx)"``; empty when it takes none."""
        if not self.suffixes:
            return ""
        return f"{self.title or self.name} ({' '.join('*' + s for s in self.suffixes)})"


def source_capabilities(plugin: Any) -> SourceCapabilities:
    """The capabilities a loaded model-source plugin declares (missing or malformed ones take the defaults)."""
    default = SourceCapabilities(name=str(plugin.name))
    suffixes = getattr(plugin, "suffixes", ())
    suffixes = tuple(dict.fromkeys(s.lower() for s in suffixes if isinstance(s, str) and len(s) > 1
                                   and s.startswith(".") and not any(c in s for c in " *;()")))

    def flag(key: str) -> bool:
        value = getattr(plugin, key, getattr(default, key))
        return value if isinstance(value, bool) else bool(getattr(default, key))

    title = getattr(plugin, "title", "")
    return SourceCapabilities(default.name, title if isinstance(title, str) else "", suffixes,
                              takes_names=flag("takes_names") and callable(getattr(plugin, "model_names", None)),
                              takes_arch=flag("takes_arch"), pretrained_weights=flag("pretrained_weights"),
                              ends_in_logits=flag("ends_in_logits"), builds_for_classes=flag("builds_for_classes"))


@runtime_checkable
class DatasetSource(Protocol):
    """A ``workbench.datasets`` plugin.

    Optional attributes the Data tab reads (defaults in :func:`dataset_choices`): ``title`` (one line
    shown in the dataset list), ``path_kind`` ("folder", "file" or "none": what ``[data] path`` names)
    and ``file_filter`` (a file dialog filter such as ``"Tables (*.npz *.csv)"``).
    """

    name: str

    def open(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class DatasetChoice:
    """How the Data tab offers one installed dataset plugin."""

    name: str  # the ``[data] dataset`` value
    title: str
    path_kind: str  # "folder" | "file" | "none"
    file_filter: str = ""


def dataset_choices() -> list[DatasetChoice]:
    """Every installed dataset plugin as the Data tab lists it, by name."""
    out = []
    for name, plugin in registry().plugins(DATASETS).items():
        kind = str(getattr(plugin, "path_kind", "folder"))
        if kind not in ("folder", "file", "none"):
            kind = "folder"
        out.append(DatasetChoice(name, str(getattr(plugin, "title", "") or name), kind,
                                 str(getattr(plugin, "file_filter", "") or "")))
    return sorted(out, key=lambda c: c.name)


@runtime_checkable
class Exporter(Protocol):
    """A ``workbench.exporters`` plugin. Optional: ``description``, ``output_kind`` ("file"/"folder"), ``suffix``,
    ``load_for_report(paths, model)`` (runs the files it wrote: the export report's figures; without it the
    report says the format was not run), ``makes_onnx_variants`` (True: the INT8/fp16/preprocessing variants
    can be made from its ONNX file)."""

    name: str

    def export(self, module: Any, spec: Any, out: Path, recipe_toml: str | None = None,
               tolerance: float | None = None) -> ExportResult: ...


@runtime_checkable
class WeightsProvider(Protocol):
    """A ``workbench.weights`` plugin: pretrained weights for one timm architecture, from an installed package."""

    name: str
    architecture: str

    def available(self) -> bool: ...

    def state_dict(self, model: Any) -> Any: ...


@runtime_checkable
class CompareStrategy(Protocol):
    """A ``workbench.strategies`` plugin (``workbench.strategies`` describes the contract and holds the built-ins)."""

    name: str
    syntax: str
    description: str

    def parse(self, arg: str) -> Any: ...

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None: ...


@runtime_checkable
class TrainingCallback(Protocol):
    """A ``workbench.callbacks`` plugin: a ``workbench.training.callbacks.Callback`` subclass with a ``name``,
    constructible without arguments (each run gets a fresh instance; ``state_dict`` travels in checkpoints)."""

    name: str

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# The contract each group's plugin object must satisfy (checked after loading).
CONTRACTS: dict[str, Any] = {MODEL_SOURCES: ModelSource, DATASETS: DatasetSource, EXPORTERS: Exporter,
                             WEIGHTS: WeightsProvider, STRATEGIES: CompareStrategy, CALLBACKS: TrainingCallback}


@dataclass
class PluginFailure:
    group: str
    name: str
    target: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.target}) in {self.group} was skipped: {self.error}"


@dataclass
class PluginRegistry:
    """Loaded plugins per group, plus the ones that failed to load."""

    _loaded: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    _extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def register(self, group: str, plugin: Any) -> None:
        """Add a plugin object by hand (tests, embedding applications)."""
        _check_shape(group, plugin)
        self._extra.setdefault(group, {})[plugin.name] = plugin
        self._loaded.pop(group, None)

    def plugins(self, group: str) -> dict[str, Any]:
        """All working plugins of a group, by name, loading them on first use."""
        if group not in self._loaded:
            found: dict[str, Any] = {}
            for ep in _entry_points(group):
                plugin = self._load_one(group, ep)
                if plugin is not None and plugin.name not in found:
                    found[plugin.name] = plugin
            found.update(self._extra.get(group, {}))
            self._loaded[group] = found
        return self._loaded[group]

    def names(self, group: str) -> list[str]:
        """Names declared in a group, without importing the plugins (cheap; for validating files)."""
        return sorted({ep.name for ep in _entry_points(group)} | set(self._extra.get(group, {})))

    def model_sources(self) -> list[SourceCapabilities]:
        """Every working model source's capabilities, in the order sources are tried."""
        return [source_capabilities(plugin) for plugin in self.plugins(MODEL_SOURCES).values()]

    def suffix_map(self) -> dict[str, str]:
        """File suffix (lower case, with the dot) -> the model source that declares it."""
        found: dict[str, str] = {}
        for caps in self.model_sources():
            for suffix in caps.suffixes:
                found.setdefault(suffix, caps.name)
        return found

    def get(self, group: str, name: str) -> Any:
        from workbench.errors import WorkbenchError

        plugins = self.plugins(group)
        if name not in plugins:
            known = ", ".join(sorted(plugins)) or "none"
            failed = [str(f) for f in self.failures if f.group == group and f.name == name]
            hint = f" ({failed[0]})" if failed else ""
            raise WorkbenchError(f"no {group.split('.')[-1][:-1].replace('_', ' ')} plugin named {name!r}{hint}; available: {known}")
        return plugins[name]

    def _load_one(self, group: str, ep: EntryPoint) -> Any | None:
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
            _check_shape(group, plugin)
            return plugin
        except Exception as exc:  # a broken plugin must never crash the app
            self.failures.append(PluginFailure(group, ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
            return None


def _check_shape(group: str, plugin: Any) -> None:
    contract = CONTRACTS.get(group)
    if contract is None or isinstance(plugin, contract):
        return
    # runtime_checkable only says yes or no; name what is missing for the failure report.
    members = list(contract.__annotations__) + [m for m, v in vars(contract).items()
                                                if callable(v) and not m.startswith("_")]
    missing = [m for m in members if not hasattr(plugin, m)]
    raise TypeError(f"plugin object lacks {', '.join(missing) or 'the ' + contract.__name__ + ' contract'}")


def _entry_points(group: str) -> list[EntryPoint]:
    return sorted(_all_entry_points().select(group=group), key=lambda ep: ep.name)


_scanned: tuple[tuple[str, ...], Any] | None = None  # (sys.path, EntryPoints; SelectableGroups before 3.12)


def _all_entry_points() -> Any:
    """Every installed entry point, read once per ``sys.path`` (each scan reads every distribution's metadata)."""
    global _scanned
    key = tuple(sys.path)
    if _scanned is None or _scanned[0] != key:
        _scanned = (key, entry_points())
    return _scanned[1]


_registry: PluginRegistry | None = None


def registry() -> PluginRegistry:
    """The process-wide registry (created on first use)."""
    global _registry
    if _registry is None:
        _registry = PluginRegistry()
    return _registry
