"""The training-log hint: validation accuracy stuck at chance while training accuracy climbs."""

from __future__ import annotations

import pytest

from workbench.hints import STUCK_AT_CHANCE, chance_band, stuck_at_chance


def epochs(*pairs: tuple[float, float | None]) -> list[dict]:
    return [{"type": "epoch", "epoch": i, "train_accuracy": t, "val_accuracy": v} for i, (t, v) in enumerate(pairs)]


@pytest.mark.slow
def test_val_at_chance_while_train_climbs_names_batchnorm_of_a_random_init_trunk():
    hint = stuck_at_chance(epochs((0.45, 0.10), (0.82, 0.11)), 10, batchnorm="train", pretrained=False)
    assert hint is not None and hint.startswith(STUCK_AT_CHANCE)
    assert "at chance (11.0%; chance is 10.0% for 10 classes) while training accuracy climbed to 82.0%" in hint
    assert "BatchNorm statistics of a random-init trunk" in hint and "pretrained weights" in hint
    # Pretrained weights with BatchNorm re-estimated on the data: keep the pretrained statistics.
    hint = stuck_at_chance(epochs((0.9, 0.1)), 10, batchnorm="train", pretrained=True)
    assert hint is not None and 'BatchNorm policy "eval"' in hint
    # No BatchNorm (or all of it in inference mode): memorising, not BatchNorm.
    for kwargs in ({"has_batchnorm": False}, {"batchnorm": "eval", "pretrained": True}):
        hint = stuck_at_chance(epochs((0.9, 0.1)), 10, **kwargs)
        assert hint is not None and "memorises" in hint and "BatchNorm" not in hint


def test_no_hint_when_validation_learns_or_training_does_not():
    assert stuck_at_chance(epochs((0.5, 0.4), (0.9, 0.85)), 10) is None  # both learn
    assert stuck_at_chance(epochs((0.12, 0.1), (0.15, 0.1)), 10) is None  # neither learns yet
    assert stuck_at_chance(epochs((0.9, 0.6), (0.95, 0.1)), 10) is None  # validation learnt once: not "stuck"
    assert stuck_at_chance(epochs((0.9, None)), 10) is None  # no validation set
    assert stuck_at_chance([], 10) is None and stuck_at_chance(epochs((1.0, 0.0)), 1) is None
    # Two classes: chance is 50%, so 55% is still chance and 60% is not.
    assert chance_band(2) == 0.55
    assert stuck_at_chance(epochs((0.95, 0.55)), 2) is not None
    assert stuck_at_chance(epochs((0.95, 0.60)), 2) is None
    # Records straight from metrics.jsonl: NaN and missing values are skipped, not trusted.
    assert stuck_at_chance(epochs((float("nan"), 0.1)), 10) is None


@pytest.mark.slow
def test_workbench_train_prints_the_hint_once_with_the_runs_context(tmp_path):
    """The CLI's epoch loop: the hint comes from the real workspace (random-init test_resnet, BatchNorm)."""
    from tests.test_evaluate import write_tiny_project
    from workbench.cli.train import EpochHints
    from workbench.project import load_project
    from workbench.training.prepare import prepare_training
    from workbench.training.reports import EpochReport

    prepared = prepare_training(load_project(write_tiny_project(tmp_path)), tmp_path / "run")
    hints = EpochHints(prepared.trainer)
    assert hints.context == {"batchnorm": "freeze", "pretrained": False, "has_batchnorm": True,
                             "lr": prepared.trainer.plan.train.lr}
    first = hints.add(EpochReport(0, 3, 0.9, 0.5, 1.2, 0.34, None, 1.0))
    second = hints.add(EpochReport(1, 3, 0.4, 0.9, 1.3, 0.33, None, 1.0))
    third = hints.add(EpochReport(2, 3, 0.2, 0.95, 1.3, 0.33, None, 1.0))
    assert first is None  # 50% train accuracy on 3 classes: not climbed far enough yet
    assert second is not None and "random-init trunk" in second and "3 classes" in second
    assert third is None  # said once per run


# The first 4 epochs of `workbench compare --strategies freeze:3` on the pretrained demo (LR 3e-3), as logged.
DIVERGED = [{"type": "epoch", "epoch": i, "train_loss": loss, "train_accuracy": acc, "val_accuracy": 0.1003}
            for i, (loss, acc) in enumerate([(2.3767, 0.0814), (2.3780, 0.0876), (2.3293, 0.0967), (2.3264, 0.0987)])]


def test_a_training_loss_stuck_at_a_uniform_guess_names_the_lr_for_pretrained_layers():
    from workbench.hints import NOT_LEARNING, epoch_hint, not_learning

    hint = epoch_hint(DIVERGED, 10, batchnorm="eval", pretrained=True, has_batchnorm=True, lr=3e-3)
    assert hint is not None and hint.startswith(f"{NOT_LEARNING}: after 4 epochs the training loss is 2.33")
    assert "ln 10 = 2.3" in hint and "learning rate (0.003) is too high for the pretrained layers" in hint
    random_init = not_learning(DIVERGED, 10, pretrained=False, lr=3e-3)
    assert random_init is not None and "far too high" in random_init and "labels" in random_init
    assert not_learning(DIVERGED[:1], 10, pretrained=True, lr=3e-3) is None  # one epoch is too early to say
    learning = [{**e, "train_loss": 2.3 - 0.6 * i, "train_accuracy": 0.1 + 0.2 * i, "val_accuracy": 0.1 + 0.2 * i}
                for i, e in enumerate(DIVERGED)]
    assert epoch_hint(learning, 10, pretrained=True, lr=3e-3) is None
    climbing_loss_only = [{**e, "train_accuracy": 0.5} for e in DIVERGED]  # accuracy above chance: it learns
    assert not_learning(climbing_loss_only, 10, lr=3e-3) is None
    assert not_learning([{"train_loss": 0.7, "train_accuracy": 0.5}] * 3, 1) is None
