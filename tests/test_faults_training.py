"""Faults during training: nothing non-finite is ever written, and the run says where it broke."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch.utils.data import TensorDataset

from tests.test_trainer import tiny_data, workspace
from workbench.errors import WorkbenchError
from workbench.export import export_model
from workbench.freezing import linear_probe
from workbench.training.trainer import Trainer, TrainingError


@pytest.mark.slow
def test_nonfinite_validation_loss_stops_the_run(tmp_path):
    data = tiny_data()
    x, y = data.val.tensors
    x = x.clone()
    x[0] = float("inf")  # one broken validation image: val loss NaN, training itself stays finite
    data.val = TensorDataset(x, y)
    ws = workspace(epochs=2)
    linear_probe(ws.plan, ws.tree)
    with pytest.raises(TrainingError, match=r"validation loss became nan at epoch 0"):
        list(Trainer(ws, data, tmp_path / "run").run())
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_diverging_weights_stop_the_run_and_nothing_nonfinite_is_written(tmp_path):
    ws = workspace(epochs=3, optimizer="sgd", lr=1e6, scheduler="constant")
    with pytest.raises(TrainingError, match=r"(loss|the weights) became"):
        list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    run = tmp_path / "run"
    if (run / "model.safetensors").exists():
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(str(run / "model.safetensors")).values()
                   if t.is_floating_point())
    if (run / "checkpoints" / "last.pt").exists():
        from workbench.training.checkpoint_file import load_checkpoint

        state = load_checkpoint(run / "checkpoints" / "last.pt").model
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


@pytest.mark.slow
def test_weights_poisoned_mid_run_are_caught_before_the_checkpoint(tmp_path):
    ws = workspace(epochs=2)
    linear_probe(ws.plan, ws.tree)
    data = tiny_data()
    data.val = None  # no validation pass to trip over the broken weight first
    trainer = Trainer(ws, data, tmp_path / "run")
    reports = trainer.run()
    for report in reports:
        if type(report).__name__ == "StepReport" and report.batch == report.batches:
            with torch.no_grad():  # poisoned after the epoch's last step: no loss sees it
                trainer.model.fc.bias[3] = math.inf
            break
    with pytest.raises(TrainingError, match=r"the weights became non-finite in 1 tensor\(s\) \(fc.bias\)"):
        list(reports)
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_model_with_nan_in_a_frozen_layer_is_refused_before_training(tmp_path):
    ws = workspace(epochs=1)
    linear_probe(ws.plan, ws.tree)
    with torch.no_grad():
        ws.backbone.module.layer1[0].conv1.weight[0, 0, 0, 0] = math.nan  # frozen: training never writes it
    with pytest.raises(TrainingError, match=r"holds NaN or inf before training, in 1 tensor\(s\) "
                                            r"\(layer1.0.conv1.weight\)"):
        list(Trainer(ws, tiny_data(), tmp_path / "run").run())
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx"])
def test_no_exporter_writes_nonfinite_weights(tmp_path, fmt):
    ws = workspace()
    with torch.no_grad():
        ws.backbone.module.layer1[0].conv1.weight[0, 0, 0, 0] = float("nan")
    out = tmp_path / ("export" if fmt == "safetensors" else f"model.{fmt}")
    with pytest.raises(WorkbenchError, match=r"refusing to export: 1 tensor\(s\) hold NaN or inf \(layer1.0.conv1.weight\)"):
        export_model(ws.backbone.module, ws.backbone.spec, fmt, out)
    assert not out.exists()


# --- the run folder -------------------------------------------------------------------------

from tests.test_cli_train import write_project  # noqa: E402
from workbench.cli import main  # noqa: E402


def _one_error_line(capsys) -> str:
    """The one `error:` line (warnings about the plan may come before it), with no traceback."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.slow
def test_a_new_run_never_lands_in_a_folder_holding_another(tmp_path, capsys):
    project = write_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    weights = (run / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(project), "--out", str(run)]) == 2
    err = _one_error_line(capsys)
    assert "already holds a run" in err and "--overwrite" in err and "--resume" in err
    assert (run / "model.safetensors").read_bytes() == weights  # nothing touched
    assert main(["train", str(project), "--out", str(run), "--overwrite", "--epochs", "1"]) == 0
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert [s["global_step"] for s in steps] == [1, 2, 3]  # the old run's records are gone


@pytest.mark.slow
def test_a_folder_being_trained_in_is_locked(tmp_path, capsys):
    from workbench.run_folder import RunLock, is_running

    project = write_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    other = RunLock(run)  # stands for a second `workbench train --out run` still training
    other.acquire()
    try:
        assert is_running(run)
        assert main(["train", str(project), "--out", str(run)]) == 2
        assert "is in use: another training is writing into it" in _one_error_line(capsys)
        assert not (run / "metrics.jsonl").exists()
    finally:
        other.release()
    assert not is_running(run)


@pytest.mark.slow
def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    project = write_project(tmp_path, epochs=1)
    (tmp_path / "afile").write_text("x")
    assert main(["train", str(project), "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in _one_error_line(capsys)
    assert main(["train", str(project), "--out", str(tmp_path / "afile" / "run")]) == 2
    assert "is a file" in _one_error_line(capsys)


@pytest.mark.slow
def test_resume_on_changed_data_is_refused_unless_allowed(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    project = write_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    for i in range(4):  # four more red images
        Image.fromarray(np.full((20, 20, 3), (220, 10, 10), np.uint8)).save(tmp_path / "data" / "red" / f"new{i}.png")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = _one_error_line(capsys)
    assert "the data changed since its checkpoint (18 → 21 training images" in err and "--allow-data-change" in err
    assert main(["train", "--resume", str(run), "--epochs", "2", "--allow-data-change"]) == 0


@pytest.mark.slow
def test_resume_after_a_kill_cleans_up_and_keeps_one_record_per_step(tmp_path):
    project = write_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    # What kill -9 during the final weights write leaves: a temp file, no weights file, the previous
    # checkpoint (which holds its weights), metrics past it (replayed on resume) and a torn last line.
    from workbench.training.checkpoint_file import load_checkpoint, save_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state.model_file == "../model.safetensors"  # the final one names the weights file
    (run / "model.safetensors").unlink()
    (run / ".model.safetensors.x1y2.tmp").write_bytes(b"\0" * 1000)
    (run / "checkpoints" / ".last.pt.a1b2.tmp").write_bytes(b"\0" * 1000)
    state = replace(state, model_file=None, epoch=0, batch=2, global_step=2)  # older than the metrics, holds weights
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"type": "step", "epoch": 0, "glo')
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.safetensors").exists()
    assert not list(run.glob(".*.tmp")) and not list((run / "checkpoints").glob(".*.tmp"))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["global_step"] for r in records if r["type"] == "step"]
    assert steps == [1, 2, 3]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [0]


@pytest.mark.slow
def test_last_batch_of_one_image_with_training_batchnorm(tmp_path):
    from tests.test_trainer import tiny_data

    data = tiny_data(n=17)  # batch 16: a last batch of 1, and BatchNorm trains (full fine-tune)
    ws = workspace(epochs=1)
    reports = list(Trainer(ws, data, tmp_path / "run").run())
    notices = [r.message for r in reports if getattr(r, "kind", "") == "notice"]
    assert any("last batch of 1 image" in m for m in notices)
    assert reports[-1].kind == "finished"
    assert sum(type(r).__name__ == "StepReport" for r in reports) == 1


def test_atomic_writes_honour_the_umask(tmp_path):
    import os
    import stat

    from workbench.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "project.toml", "x = 1\n")
        assert stat.S_IMODE((tmp_path / "project.toml").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.toml", "x = 1\n")
        assert stat.S_IMODE((tmp_path / "private.toml").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_bit_exact_with_augmentation_and_loader_workers(tmp_path, workers):
    """Stop after 4 steps, resume: the same next-step loss and the same final tensors as never stopping."""
    from workbench.data import open_data
    from workbench.project import load_project
    from workbench.training.reports import StepReport
    from workbench.workspace import Workspace

    project = write_project(tmp_path, epochs=2)
    text = project.read_text().replace("augment = false", "augment = true").replace("num_workers = 0",
                                                                                  f"num_workers = {workers}")
    project.write_text(text)

    def trainer(run, resume=False):
        plan = load_project(project)
        torch.manual_seed(plan.train.seed)
        ws = Workspace.from_plan(plan)
        data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=True)
        return ws, Trainer(ws, data, run, resume=resume)

    ws_a, straight = trainer(tmp_path / "a")
    losses_a = [r.loss for r in straight.run() if isinstance(r, StepReport)]
    ws_b, first = trainer(tmp_path / "b")
    for report in first.run():
        if isinstance(report, StepReport) and report.global_step == 4:
            first.request_stop()
    ws_c, second = trainer(tmp_path / "b", resume=True)
    losses_c = [r.loss for r in second.run() if isinstance(r, StepReport)]
    assert losses_c == losses_a[4:]  # exact, step for step
    after_a, after_c = straight.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(after_a[k], after_c[k]) for k in after_a)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_tensors_names_exactly_the_broken_tensors(bad):
    """NaN, +inf and -inf are found in a channels_last weight and a bfloat16 buffer; empty and
    integer tensors are fine; a finite model has none."""
    from workbench.finite import nonfinite_tensors

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(0, 4))
    net[1].running_var = net[1].running_var.bfloat16()
    net = net.to(memory_format=torch.channels_last)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nonfinite_tensors(net) == []
    with torch.no_grad():
        net[0].weight[5, 1, 2, 0] = bad
        net[1].running_var[3] = bad
    assert nonfinite_tensors(net) == ["0.weight", "1.running_var"]
    net[0].weight.requires_grad_(False)  # frozen: not what training changes; BN in train mode is
    assert nonfinite_tensors(net, changing_only=True) == ["1.running_var"]
