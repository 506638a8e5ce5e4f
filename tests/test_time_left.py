"""Time left is priced per kind of epoch (freeze state, cache-filling first epoch), or not given at all."""

from __future__ import annotations

from workbench.time_left import phase_of, starts_phase, time_left

DEMO_UNFREEZE = [2]  # the demo: epochs 0-1 head on cached features, 2-3 the top stage joins


def test_phases_follow_the_unfreeze_schedule():
    assert [phase_of(e, DEMO_UNFREEZE) for e in range(4)] == [0, 0, 1, 1]
    assert [starts_phase(e, DEMO_UNFREEZE) for e in range(4)] == [True, False, True, False]


def test_no_figure_while_a_kind_of_epoch_to_come_was_never_measured():
    # epoch 1, batch 5 of the demo: the cached epochs and the unfrozen ones have not run yet
    assert time_left(4, DEMO_UNFREEZE, 0, 5, 23, 0.3, {}) is None
    # epoch 2 (cached, fast) measured; epoch 3 starts a new freeze state: still unknown
    assert time_left(4, DEMO_UNFREEZE, 1, 5, 23, 0.01, {0: 14.0}) is None


def test_each_later_epoch_is_priced_by_a_measured_epoch_of_its_kind():
    # in epoch 3 (first of its state, filling a new cache): epoch 4 is of a kind not measured yet
    assert time_left(4, DEMO_UNFREEZE, 2, 10, 23, 0.5, {0: 14.0, 1: 0.2}) is None
    # in epoch 4: only this epoch's rest is left
    assert time_left(4, DEMO_UNFREEZE, 3, 20, 23, 0.05, {0: 14.0, 1: 0.2, 2: 12.0}) == 0.05 * 3
    # a plain run: the first epoch is the only one of its kind until the second runs, whose pace then holds
    assert time_left(5, [], 0, 10, 20, 1.0, {}) is None
    assert time_left(5, [], 1, 10, 20, 1.0, {0: 30.0}) == 10 * 1.0 + 3 * 20 * 1.0
    assert time_left(5, [], 2, 0, 20, 9.0, {0: 30.0, 1: 21.0}) == 20 * 9.0 + 2 * 21.0
