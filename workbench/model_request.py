"""The one mapping between the project file's ``[model]`` section and a :class:`LoadRequest`, both ways."""

from __future__ import annotations

from workbench.backbone import LoadRequest
from workbench.plan import FinetunePlan, ModelConfig
from workbench.plugins import SourceCapabilities
from workbench.sources import capabilities, source_for


def base_classes(caps: SourceCapabilities, num_classes: int | None, new_head: bool) -> int | None:
    """The class count a source is asked to build its model for (loading a plan, and rebuilding its export).

    Under a new head only a source that builds for a class count gets one; for the others a count would
    replace the file's own classifier, and the file's output (a detector's map, a classifier that is cut
    off) is left as it is instead.
    """
    return num_classes if not new_head or caps.builds_for_classes else None


def request_from_plan(plan: FinetunePlan) -> LoadRequest:
    """What to load for ``plan``: file names resolved against the project's folder."""
    model = plan.model
    caps = capabilities(model.source)
    ref = model.name
    if caps.takes_files:
        ref = str(plan.resolve_path(model.name))
    num_classes = base_classes(caps, model.num_classes, plan.head is not None)
    return LoadRequest(ref=ref, source=model.source, arch=model.arch, pretrained=model.pretrained,
                       num_classes=num_classes, input_size=model.input_size, mean=model.mean, std=model.std)


def model_config_from_request(request: LoadRequest) -> ModelConfig:
    """The ``[model]`` section that loads what ``request`` asks for (validated like the project file)."""
    return ModelConfig(source=source_for(request), name=request.ref, arch=request.arch,
                       pretrained=request.pretrained, num_classes=request.num_classes,
                       input_size=request.input_size, mean=request.mean, std=request.std)
