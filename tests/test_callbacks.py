"""User callbacks on the Trainer's named events, on a real timm model (resnet18 at 32×32)."""

from __future__ import annotations

import json

import pytest

from tests.test_trainer import tiny_data, workspace
from workbench.errors import TrainingError
from workbench.run_folder import RunDir
from workbench.training.callbacks import EVENTS, Callback
from workbench.training.checkpoint_file import load_checkpoint
from workbench.training.reports import EpochReport, StateReport, StepReport
from workbench.training.trainer import Trainer

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process

BATCH = ["before_batch", "after_loss", "after_step", "after_batch"]


class Recorder(Callback):
    """Records every event with where the run is; optionally stops or fails at a global step."""

    def __init__(self, stop_at: int | None = None, fail_at: int | None = None) -> None:
        self.events: list[tuple[str, int, int, int]] = []
        self.stop_at, self.fail_at = stop_at, fail_at
        self.step_reports: list[StepReport] = []
        self.val_seen: list[float | None] = []

    def _record(self, name: str, t) -> None:
        self.events.append((name, t.epoch, t.batch, t.global_step))

    def after_batch(self, t) -> None:
        self._record("after_batch", t)
        assert isinstance(t.report, StepReport) and t.report.global_step == t.global_step
        self.step_reports.append(t.report)
        if t.global_step == self.stop_at:
            t.emit(StateReport("notice", f"user callback: stopping at step {t.global_step}", t.epoch))
            t.request_stop()
        if t.global_step == self.fail_at:
            raise TrainingError(f"user callback refused step {t.global_step}")

    def after_validate(self, t) -> None:
        self._record("after_validate", t)
        self.val_seen.append(t.val_accuracy)


for _name in EVENTS:  # every other event: just record it
    if _name not in vars(Recorder):
        setattr(Recorder, _name, lambda self, t, _n=_name: self._record(_n, t))


def names(recorder: Recorder) -> list[str]:
    return [e[0] for e in recorder.events]


def test_a_user_callback_gets_every_event_in_order(tmp_path):
    ws = workspace(epochs=2)  # 48 images, batch 16: 3 batches per epoch; 16 validation images
    recorder = Recorder()
    trainer = Trainer(ws, tiny_data(), tmp_path / "run", callbacks=[recorder])
    reports = list(trainer.run())
    epoch = ["before_epoch", *BATCH * 3, "before_validate", "after_validate", "after_epoch"]
    assert names(recorder) == ["before_fit", *epoch, *epoch, "after_fit", "teardown"]
    assert [e[1:] for e in recorder.events if e[0] == "after_batch"] == [
        (0, 1, 1), (0, 2, 2), (0, 3, 3), (1, 1, 4), (1, 2, 5), (1, 3, 6)]
    # The report a callback sees after a batch is the one the consumer gets, and validation results are in t.
    steps = [r for r in reports if isinstance(r, StepReport)]
    assert all(a is b for a, b in zip(recorder.step_reports, steps)) and len(steps) == 6
    epochs = [r for r in reports if isinstance(r, EpochReport)]
    assert recorder.val_seen == [e.val_accuracy for e in epochs] and None not in recorder.val_seen
    assert reports[-1].kind == "finished"


def test_a_user_callback_stops_training_with_a_checkpoint(tmp_path):
    ws = workspace(epochs=3)
    recorder = Recorder(stop_at=4)  # the first batch of the second epoch
    trainer = Trainer(ws, tiny_data(), tmp_path / "run", callbacks=[recorder])
    reports = list(trainer.run())
    assert names(recorder)[-7:] == ["before_epoch", *BATCH, "on_stop", "teardown"]
    assert "after_fit" not in names(recorder)
    kinds = [r.kind if isinstance(r, StateReport) else type(r).__name__ for r in reports]
    assert kinds[-3:] == ["notice", "StepReport", "stopped"]  # its report, the step's report, then the stop
    assert sum(isinstance(r, StepReport) for r in reports) == 4
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt.position == (1, 1, 4)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "stopped"
    resumed = [r for r in Trainer(workspace(epochs=3), tiny_data(), tmp_path / "run", resume=True).run()
               if isinstance(r, StepReport)]
    assert [r.global_step for r in resumed] == list(range(5, 10))


def test_a_user_callback_that_raises_fails_the_run_and_still_tears_down(tmp_path):
    ws = workspace(epochs=2)
    recorder = Recorder(fail_at=2)
    with pytest.raises(TrainingError, match="user callback refused step 2"):
        list(Trainer(ws, tiny_data(), tmp_path / "run", callbacks=[recorder]).run())
    assert names(recorder)[-2:] == ["after_batch", "teardown"]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "user callback refused step 2" in status["message"]
    assert not RunDir(tmp_path / "run").is_running()  # unlocked: a new run may claim it with --overwrite
    reports = list(Trainer(workspace(epochs=1), tiny_data(), tmp_path / "run", overwrite=True).run())
    assert reports[-1].kind == "finished"
