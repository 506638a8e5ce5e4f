"""`workbench runs` and the run catalog on runs made by the CLI: finished, stopped, killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_cli_train import write_project
from workbench.cli import main
from workbench.run_catalog import list_runs, read_run

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process


def test_runs_lists_finished_stopped_and_killed_runs(tmp_path, capsys):
    project = write_project(tmp_path, epochs=2)
    runs = tmp_path / "runs"
    assert main(["train", str(project), "--out", str(runs / "a-finished")]) == 0

    # A run killed with SIGKILL mid-training (no chance to write anything on the way out).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    killed = runs / "b-killed"
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", str(project), "--out", str(killed),
                             # Enough epochs that it is still running when killed: cached epochs take milliseconds.
                             "--epochs", "5000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while (not (killed / "checkpoints" / "last.pt").exists()
           or (killed / "metrics.jsonl").read_text().count('"type": "epoch"') < 2):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    running = read_run(killed)
    assert running.status == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    # Edit the plan: the listing says how each run's recipe differs from it.
    project.write_text(project.read_text().replace("lr = 0.003", "lr = 0.001"))
    capsys.readouterr()
    assert main(["runs", str(project), "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"a-finished", "b-killed"}
    a, b = listed["a-finished"], listed["b-killed"]
    assert a["status"] == "finished" and a["epochs_done"] == 2 and a["epochs_total"] == 2
    assert 0 <= a["best_val_accuracy"] <= 1 and a["last_val_accuracy"] is not None
    assert "train.lr: 0.003 → 0.001" in a["differences"]
    assert a["weights"].startswith("run a-finished, epoch 2 of 2")
    assert b["status"] == "crashed" and b["resumable"] and b["epochs_total"] == 5000
    # The killed run continues, and the listing follows.
    assert main(["train", "--resume", str(killed), "--epochs", str(b["epochs_done"] + 1)]) == 0
    assert read_run(killed).status == "finished"
    capsys.readouterr()
    assert main(["runs", str(project)]) == 0
    table = capsys.readouterr().out
    assert "a-finished" in table and "b-killed" in table and "finished" in table


def test_a_stopped_run_and_export_says_which_weights(tmp_path, capsys):
    from workbench.data import open_data
    from workbench.project import load_project
    from workbench.training.reports import StepReport
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace

    project = write_project(tmp_path, epochs=3)
    plan = load_project(project)
    ws = Workspace.from_plan(plan)
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False)
    trainer = Trainer(ws, data, tmp_path / "runs" / "s")
    for report in trainer.run():
        if isinstance(report, StepReport) and report.global_step == 4:
            trainer.request_stop()
    (info,) = list_runs(project, plan)
    assert info.status == "stopped" and info.resumable and info.epochs_done == 1
    assert info.differences == []
    capsys.readouterr()
    assert main(["export", str(info.path), "--format", "safetensors", "--out", str(tmp_path / "exp")]) == 0
    assert "weights: run s, last checkpoint after epoch 1 (stopped)" in capsys.readouterr().out
