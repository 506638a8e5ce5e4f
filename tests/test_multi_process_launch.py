"""The window's multi-process launcher without the window: bad choices, a rank killed mid-run, Continue, Pause."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from tests.test_cli_train import write_project
from workbench.errors import TrainingError, WorkbenchError
from workbench.multi_process_launch import MultiProcessRun, ProcessChoice, check_choice
from workbench.training.process_rank import pid_file
from workbench.training.reports import EpochReport, StateReport, StepReport


@pytest.mark.parametrize(("choice", "gpus", "cores", "message"), [
    (ProcessChoice(gpus=(0, 5)), 2, 8, "device cuda:5 does not exist on this machine (CUDA devices: cuda:0, cuda:1)"),
    (ProcessChoice(gpus=(0, 1)), 0, 8, "device cuda:0 does not exist on this machine (CUDA devices: none)"),
    (ProcessChoice(gpus=(0, 1), nproc=4), 2, 8, "4 processes on 2 GPU(s): DDP runs one process per GPU; tick 4 GPUs "
                                                "or start 2 processes"),
    (ProcessChoice(gpus=(1, 1)), 2, 8, "a device is chosen twice (cuda:1, cuda:1)"),
    (ProcessChoice(nproc=9), 0, 4, "9 CPU processes on a machine with 4 cores: each process needs a core of its own; "
                                   "start at most 4"),
    (ProcessChoice(nproc=1), 0, 4, "a multi-process run needs at least 2 processes (1 chosen)"),
])
def test_a_choice_that_cannot_run_here_is_one_clear_message(choice, gpus, cores, message):
    with pytest.raises(WorkbenchError) as info:
        check_choice(choice, gpu_count=gpus, cpu_count=cores)
    assert message in str(info.value)


def test_a_device_that_does_not_exist_is_refused_before_anything_starts(tmp_path):
    from workbench.project import load_project
    from workbench.workspace import Workspace

    ws = Workspace.from_plan(load_project(write_project(tmp_path)))
    missing = torch.cuda.device_count()
    with pytest.raises(WorkbenchError, match=f"device cuda:{missing} does not exist on this machine"):
        MultiProcessRun(ws, tmp_path / "run", ProcessChoice(gpus=(0, missing)))
    assert not (tmp_path / "run").exists()


def test_pause_and_stop_reach_every_rank_then_a_killed_rank_is_named_and_the_run_stays_resumable(tmp_path):
    from workbench.project import load_project
    from workbench.run_catalog import read_run
    from workbench.run_folder import RunDir
    from workbench.workspace import Workspace

    project = write_project(tmp_path, epochs=100)
    project.write_text(project.read_text().replace('"layer2"]', '"layer2", "layer3", "layer4"]'))  # a linear probe
    plan = load_project(project)
    torch.manual_seed(plan.train.seed)
    ws = Workspace.from_plan(plan)
    run_dir = tmp_path / "run"

    first = MultiProcessRun(ws, run_dir, ProcessChoice(nproc=2))
    states: list[tuple[str, str]] = []
    epochs = 0
    for report in first.run():
        if isinstance(report, StateReport):
            states.append((report.kind, report.message))
            if report.kind == "paused":
                first.request_resume()
        elif isinstance(report, StepReport) and "paused" not in dict(states):
            first.request_pause()
        elif isinstance(report, EpochReport):
            epochs += 1
            if epochs >= 3 and "resumed" in dict(states):  # under load the pause can land epochs late
                first.request_stop()
    kinds = [kind for kind, _ in states]
    assert kinds[0] == "started" and "× 2 processes" in states[0][1]
    assert kinds[kinds.index("paused") + 1] == "resumed" and kinds[-1] == "stopped"  # every rank paused, then went on
    assert first.trained is not None  # the window adopts the stopped run's weights
    assert read_run(run_dir).status == "stopped" and RunDir(run_dir).checkpoint.is_file()

    second = MultiProcessRun(ws, run_dir, ProcessChoice(nproc=2), resume=True)
    killed = None
    with pytest.raises(TrainingError) as info:
        for report in second.run():
            if killed is None and isinstance(report, StepReport):
                assert report.epoch >= 3  # resumed where the stop left it
                killed = int(pid_file(second.scratch, 1).read_text())
                os.kill(killed, signal.SIGKILL)
    message = str(info.value)
    assert message.startswith("process 1 of 2 died: killed by SIGKILL"), message
    assert "the other processes were stopped" in message and "Continue resumes the run from it" in message
    assert not _alive(killed) and not _alive(second.pids.get(0))  # every process of the job ended
    assert second.trained is None
    assert read_run(run_dir).resumable and not RunDir(run_dir).is_running()


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and "(zombie)" not in open(f"/proc/{pid}/status").read()
    except OSError:
        return False
