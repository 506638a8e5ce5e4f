"""The [model] section and a LoadRequest map both ways without losing a field the user set."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from workbench.backbone import LoadRequest
from workbench.model_request import model_config_from_request, request_from_plan
from workbench.plan import FinetunePlan, ModelConfig


def test_every_field_the_user_set_survives_a_round_trip():
    model = ModelConfig(source="timm", name="resnet18", arch=None, pretrained=True, num_classes=7,
                        input_size=(3, 48, 192), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    request = request_from_plan(FinetunePlan(model=model))
    back = model_config_from_request(request)
    for f in fields(ModelConfig):
        if f.name != "label_names":  # labels come from the data, not from what is loaded
            assert getattr(back, f.name) == getattr(model, f.name), f.name


def test_a_checkpoint_path_is_resolved_against_the_project_folder(tmp_path: Path):
    plan = FinetunePlan(model=ModelConfig(source="checkpoint", name="weights/model.safetensors",
                                          arch="resnet18"), base_dir=tmp_path)
    request = request_from_plan(plan)
    assert Path(request.ref) == tmp_path / "weights" / "model.safetensors"
    assert request.arch == "resnet18"


def test_a_request_from_the_model_picker_becomes_a_valid_section():
    config = model_config_from_request(LoadRequest("efficientnet_lite0", source="timm", pretrained=True,
                                                   input_size=(3, 64, 64)))
    assert (config.source, config.name, config.pretrained, config.input_size) == \
        ("timm", "efficientnet_lite0", True, (3, 64, 64))
