"""The one mapping between the project file's ``[model]`` section and a :class:`LoadRequest`, both ways."""

from __future__ import annotations

from workbench.backbone import LoadRequest
from workbench.plan import FinetunePlan, ModelConfig
from workbench.sources import capabilities, source_for


def request_from_plan(plan: FinetunePlan) -> LoadRequest:
    """What to load for ``plan``: file names resolved against the project's folder."""
    model = plan.model
    caps = capabilities(model.source)
    ref = model.name
    if caps.takes_files:
        ref = str(plan.resolve_path(model.name))
    num_classes = model.num_classes
    if plan.head is not None and not caps.builds_for_classes:
        # The new head takes the class count; the file's own output (a detector's map, a classifier
        # that is cut off) is left as it is, as rebuild_from_config loads it.
        num_classes = None
    return LoadRequest(ref=ref, source=model.source, arch=model.arch, pretrained=model.pretrained,
                       num_classes=num_classes, input_size=model.input_size, mean=model.mean, std=model.std)


def model_config_from_request(request: LoadRequest) -> ModelConfig:
    """The ``[model]`` section that loads what ``request`` asks for (validated like the project file)."""
    return ModelConfig(source=source_for(request), name=request.ref, arch=request.arch,
                       pretrained=request.pretrained, num_classes=request.num_classes,
                       input_size=request.input_size, mean=request.mean, std=request.std)
