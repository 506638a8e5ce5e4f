"""The built-in demo: a small timm backbone on scikit-learn's handwritten digits (no download).

Recipe: epoch 0 is a linear probe (only the head trains); at epoch 1 the last two stages
join, at epoch 2 everything else, each earlier group at a smaller LR (discriminative, ×1/2.6).
"""

from __future__ import annotations

from workbench.plan import DataConfig, FinetunePlan, FreezeConfig, ModelConfig, TrainConfig, UnfreezeStep

DEMO_MODEL = "resnet18"
DEMO_INPUT = (3, 32, 32)  # the digits are 8×8: 32 px is plenty, and 4× cheaper than 64
DEMO_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
BASE_LR = 3e-3
FACTOR = 1 / 2.6


def demo_plan(pretrained: bool = False) -> FinetunePlan:
    from workbench.plan import GroupConfig

    modules = {"stem": ["conv1", "bn1"], "head": ["fc"]}
    last = len(DEMO_STAGES) - 1
    groups = [GroupConfig(name, modules.get(name, [name]), lr=BASE_LR * FACTOR ** (last - i))
              for i, name in enumerate(DEMO_STAGES)]
    return FinetunePlan(
        model=ModelConfig(source="timm", name=DEMO_MODEL, pretrained=pretrained, num_classes=10,
                          input_size=DEMO_INPUT, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        # A random-init trunk (no weights offline) has meaningless BatchNorm statistics: let them
        # adapt from epoch 0 ("train"). With pretrained weights, freeze them like everything else.
        freeze=FreezeConfig(frozen=[""], unfrozen=["fc"], batchnorm="freeze" if pretrained else "train"),
        groups=groups,
        unfreeze=[UnfreezeStep(1, ["layer4", "layer3"]), UnfreezeStep(2, ["stem", "layer1", "layer2"])],
        data=DataConfig(dataset="digits", val_split=0.2, seed=0),
        train=TrainConfig(epochs=6, batch_size=64, optimizer="adamw", scheduler="cosine", lr=BASE_LR,
                          weight_decay=0.01, warmup_epochs=0.25, augment=False, seed=0),
    )
