"""Callbacks own their state: a user's callback gets it back across a stop or a crash and ``resume``;
checkpoints of the old layout (format 1) still resume exactly; callbacks run in their declared order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.test_trainer import tiny_data, workspace
from workbench.errors import TrainingError
from workbench.freezing import linear_probe
from workbench.groups import discriminative
from workbench.plan import UnfreezeStep
from workbench.training.callbacks import Callback
from workbench.training.checkpoint_file import load_checkpoint
from workbench.training.reports import StateReport, StepReport
from workbench.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

# A user's script: a callback that counts batches and epochs and keeps every loss, added to the
# Trainer the way the README shows (``Trainer(..., callbacks=[...])``). It stops the run at a step
# (as the Stop button does), or kills the process at a step (after printing what it has).
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from tests.test_trainer import tiny_data, workspace
    from workbench.training.callbacks import Callback
    from workbench.training.checkpoint_writer import CheckpointWriter
    from workbench.training.trainer import Trainer

    class Counter(Callback):
        def __init__(self, stop_at, crash_at):
            self.batches, self.epochs, self.losses = 0, 0, []
            self.stop_at, self.crash_at = stop_at, crash_at

        def after_batch(self, t):
            self.batches += 1
            self.losses.append(t.loss_value)
            if t.global_step == self.stop_at:
                t.request_stop()
            if t.global_step == self.crash_at:
                print(json.dumps(self.seen("killed")), flush=True)
                os._exit(3)  # killed: only the last epoch checkpoint is left

        def after_epoch(self, t):
            self.epochs += 1

        def state_dict(self):
            return {"batches": self.batches, "epochs": self.epochs,
                    "losses": torch.tensor(self.losses, dtype=torch.float64)}

        def load_state_dict(self, state):
            self.batches, self.epochs = state["batches"], state["epochs"]
            self.losses = state["losses"].tolist()

        def seen(self, end):
            return {"end": end, "batches": self.batches, "epochs": self.epochs, "losses": self.losses}

    run, resume, stop_at, crash_at = sys.argv[1], sys.argv[2] == "resume", int(sys.argv[3]), int(sys.argv[4])
    Trainer.CHECKPOINT_INTERVAL_S = 0.0  # every epoch's checkpoint is written...
    CheckpointWriter.MAX_WRITE_SHARE = float("inf")
    CheckpointWriter.COPY_LIMIT_BYTES = 0  # ...and on disk before training goes on
    counter = Counter(stop_at, crash_at)
    trainer = Trainer(workspace("test_resnet", epochs=3), tiny_data(), run, resume=resume, callbacks=[counter])
    reports = list(trainer.run())
    print(json.dumps(counter.seen(reports[-1].kind)))
""")


def train(tmp_path: Path, resume: bool, stop_at: int = 0, crash_at: int = 0) -> dict:
    script = tmp_path / "user_training.py"
    script.write_text(SCRIPT)
    args = [str(tmp_path / "run"), "resume" if resume else "new", str(stop_at), str(crash_at)]
    done = subprocess.run([sys.executable, str(script), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == (3 if crash_at else 0), done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def counter_saved(tmp_path: Path) -> tuple[int, int, list[float]]:
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").callbacks["Counter"]
    return saved["batches"], saved["epochs"], saved["losses"].tolist()


def test_a_user_callback_gets_its_state_back_after_a_stop_or_a_crash_and_resume(tmp_path):
    # 3 epochs × 3 batches. Stopped at the second epoch's second batch (step 5).
    stopped = train(tmp_path, resume=False, stop_at=5)
    assert (stopped["end"], stopped["batches"], stopped["epochs"]) == ("stopped", 5, 1)
    assert counter_saved(tmp_path) == (5, 1, stopped["losses"])
    # Resumed in a new process, and killed at step 8: the counter went on from 5, not from 0.
    killed = train(tmp_path, resume=True, crash_at=8)
    assert (killed["batches"], killed["epochs"]) == (8, 2) and killed["losses"][:5] == stopped["losses"]
    # The last checkpoint (end of the second epoch) holds the counter as the epoch left it, after_epoch included.
    assert counter_saved(tmp_path) == (6, 2, killed["losses"][:6])
    # Resumed again: steps 7 and 8 are trained again, with the same losses bit for bit, and counted once.
    finished = train(tmp_path, resume=True)
    assert (finished["end"], finished["batches"], finished["epochs"]) == ("finished", 9, 3)
    assert finished["losses"][:8] == killed["losses"] and len(finished["losses"]) == 9


class Tally(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def after_step(self, t) -> None:
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


def stop_at(trainer: Trainer, step: int) -> list:
    reports = []
    for report in trainer.run():
        reports.append(report)
        if isinstance(report, StepReport) and report.global_step == step:
            trainer.request_stop()
    return reports


def test_resuming_without_a_saved_callback_or_with_a_new_one_says_so(tmp_path):
    stop_at(Trainer(workspace("test_resnet", epochs=2), tiny_data(), tmp_path / "run", callbacks=[Tally()]), 2)
    reports = list(Trainer(workspace("test_resnet", epochs=2), tiny_data(), tmp_path / "run", resume=True).run())
    notices = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "notice"]
    assert any("state of callback 'Tally', which this run does not have" in n for n in notices)

    class Fresh(Tally):
        pass

    stop_at(Trainer(workspace("test_resnet", epochs=2), tiny_data(), tmp_path / "b", callbacks=[Tally()]), 2)
    fresh, tally = Fresh(), Tally()
    reports = list(Trainer(workspace("test_resnet", epochs=2), tiny_data(), tmp_path / "b", resume=True,
                           callbacks=[fresh, tally]).run())
    notices = [r.message for r in reports if isinstance(r, StateReport) and r.kind == "notice"]
    assert any("no state for callback 'test_resuming_without_a_saved_callback_or_with_a_new_one_says_so.<locals>."
               "Fresh': it starts afresh" in n for n in notices)
    assert (tally.steps, fresh.steps) == (6, 4)  # 2 before the stop + 4; the new one counted only the resumed steps


def test_a_callback_state_that_cannot_be_checkpointed_fails_clearly(tmp_path):
    class Holds(Tally):
        def state_dict(self) -> dict:
            return {"when": object()}

    with pytest.raises(TrainingError, match=r"Holds.state_dict\(\)\['when'\] holds a value of type object: "
                                            r"a checkpoint keeps tensors"):
        list(Trainer(workspace("test_resnet", epochs=1), tiny_data(), tmp_path / "run", callbacks=[Holds()]).run())


def test_two_stateful_callbacks_under_one_key_are_refused_before_training(tmp_path):
    with pytest.raises(TrainingError, match="two callbacks keep their state under the same key 'Tally'"):
        Trainer(workspace("test_resnet", epochs=1), tiny_data(), tmp_path / "run", callbacks=[Tally(), Tally()])


def test_callbacks_run_in_their_declared_order(tmp_path):
    seen: list[str] = []

    class Named(Callback):
        def __init__(self, name: str, order: int) -> None:
            self.name, self.order = name, order

        def before_fit(self, t) -> None:
            seen.append(self.name)

    trainer = Trainer(workspace("test_resnet", epochs=1), tiny_data(), tmp_path / "run",
                      callbacks=[Named("late", 2000), Named("user", 0), Named("early", -1000), Named("user2", 0)])
    assert [type(c).__name__ if not isinstance(c, Named) else c.name for c in trainer.callbacks] == [
        "early", "GradualUnfreezing", "FeatureCaching", "NonFiniteGuard", "user", "user2", "Checkpointing",
        "MetricsWriter", "late"]
    list(trainer.run())
    assert seen == ["early", "user", "user2", "late"]


def test_a_format_1_checkpoint_of_a_gradual_unfreezing_run_resumes_exactly(tmp_path):
    """Checkpoints on users' disks from before callbacks kept their state: ``schedule_done`` at the top level."""

    def make(run: str, resume: bool = False) -> Trainer:
        ws = workspace(epochs=3)
        ws.plan.groups = discriminative(ws.default_groups(), 1e-2, 0.5)
        linear_probe(ws.plan, ws.tree)
        ws.plan.unfreeze = [UnfreezeStep(1, ["layer4"])]
        return Trainer(ws, tiny_data(), tmp_path / run, resume=resume)

    whole_trainer = make("whole")
    whole = [r.loss for r in whole_trainer.run() if isinstance(r, StepReport)]
    first = [r.loss for r in stop_at(make("run"), 5) if isinstance(r, StepReport)]  # after layer4 was unfrozen
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    new = torch.load(path, weights_only=True)
    assert new["format"] == 2 and new["callbacks"] == {"GradualUnfreezing": {"schedule_done": 1}}
    old = {**{k: v for k, v in new.items() if k != "callbacks"}, "format": 1, "schedule_done": 1}
    torch.save(old, path)
    resumed_trainer = make("run", resume=True)
    resumed = list(resumed_trainer.run())
    assert [r.kind for r in resumed if isinstance(r, StateReport) and r.kind == "unfrozen"] == []  # not twice
    assert first + [r.loss for r in resumed if isinstance(r, StepReport)] == whole  # exact, step for step
    for (key, a), b in zip(whole_trainer.model.state_dict().items(), resumed_trainer.model.state_dict().values()):
        assert torch.equal(a, b), key
    assert resumed_trainer.trained.plan.freeze.unfrozen == whole_trainer.trained.plan.freeze.unfrozen


def test_a_checkpoint_from_a_newer_workbench_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": 99, "epoch": 0}, path)
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match=r"written by a newer workbench \(checkpoint format 99; this one reads "
                                             r"up to 2\): upgrade workbench"):
        load_checkpoint(path)


# A third-party package's callback, named in the recipe ([train] callbacks) and found through the
# workbench.callbacks entry-point group: it counts batches, keeps every loss, can stop the run at a step,
# and writes what it holds when the run ends.
CALLBACK_PACKAGE = textwrap.dedent('''
    import json, os
    import torch
    from workbench.training.callbacks import Callback

    class StepCounter(Callback):
        name = "step_counter"

        def __init__(self):
            self.batches, self.losses = 0, []

        def after_batch(self, t):
            self.batches += 1
            self.losses.append(t.loss_value)
            if self.batches == int(os.environ.get("STOP_AT", "0")):
                t.request_stop()

        def teardown(self, t):
            with open(os.environ["COUNTER_OUT"], "a") as out:
                out.write(json.dumps({"batches": self.batches, "losses": self.losses}) + "\\n")

        def state_dict(self):
            return {"batches": self.batches, "losses": torch.tensor(self.losses, dtype=torch.float64)}

        def load_state_dict(self, state):
            self.batches, self.losses = int(state["batches"]), state["losses"].tolist()
''')


@pytest.mark.slow
def test_a_recipes_installed_callback_keeps_its_state_across_workbench_train_resume(tmp_path, monkeypatch):
    from tests.plugin_fixtures import install_distribution
    from tests.test_cli_train import write_project

    site = install_distribution(tmp_path / "site", "fake_wb_callbacks", CALLBACK_PACKAGE,
                                "[workbench.callbacks]\nstep_counter = fake_wb_callbacks:StepCounter\n", monkeypatch)
    project = write_project(tmp_path, epochs=2, extra='callbacks = ["step_counter"]\n')
    project.write_text(project.read_text().replace('"resnet18"', '"test_resnet"'))

    def workbench(*args: str, stop_at: int = 0, out: str = "counter.jsonl") -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "HF_HUB_OFFLINE": "1",
               "STOP_AT": str(stop_at), "COUNTER_OUT": str(tmp_path / out)}
        return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)

    def counted(out: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / out).read_text().splitlines()]

    never_stopped = workbench("train", str(project), "--out", str(tmp_path / "whole"), out="whole.jsonl")
    assert never_stopped.returncode == 0, never_stopped.stderr
    stopped = workbench("train", str(project), "--out", str(tmp_path / "run"), stop_at=4)
    assert "stopped" in stopped.stdout + stopped.stderr, stopped.stderr
    resumed = workbench("train", "--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr
    (whole,), (at_stop, at_end) = counted("whole.jsonl"), counted("counter.jsonl")
    assert whole["batches"] == 6 and at_stop["batches"] == 4  # 18 training images, batches of 6, 2 epochs
    assert at_end == whole  # counted on from 4, and every step's loss as in the run never stopped
    assert at_end["losses"][:4] == at_stop["losses"]

    # A recipe naming a callback no installed package provides: one error line, nothing trained.
    project.write_text(project.read_text().replace('"step_counter"', '"step_countr"'))
    refused = workbench("train", str(project), "--out", str(tmp_path / "never"))
    assert refused.returncode == 2 and not (tmp_path / "never").exists()
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "no installed callback named 'step_countr'; installed: step_counter" in lines[0]
