"""Round three of hostile input (issue 20): never replace what is not ours, SIGTERM is a stop, a full disk
is a clean stop, compare refuses what train refuses, and the last tracebacks are one-line errors.

Device-like targets are FIFOs in a temp folder (no root needed); every writer must refuse them
without creating anything beside them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli_train import write_project
from tests.test_faults import one_error_line
from workbench.cli import main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A one-epoch run of resnet18 (input 32x32, 3 classes) to export, evaluate and diff."""
    tmp = tmp_path_factory.mktemp("round3")
    project = write_project(tmp, epochs=1)
    assert main(["train", str(project), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def error_line(capsys) -> str:
    """The one ``error:`` line of a refused command (warnings may come before it), and no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    return errors[0]


def fifo(folder: Path, name: str = "pipe") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- 1. writers refuse non-regular targets ------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx"])
def test_export_refuses_a_fifo_and_creates_nothing_beside_it(finished_run, tmp_path, capsys, fmt):
    target = fifo(tmp_path)
    capsys.readouterr()
    assert main(["export", str(finished_run), "--format", fmt, "--out", str(target)]) == 2
    err = one_error_line(capsys)
    assert "FIFO" in err and str(target) in err, err
    assert names(tmp_path) == ["pipe"]  # no temp file or temp folder beside it
    assert (os.stat(target).st_mode & 0o170000) == 0o010000  # still a FIFO


def test_export_refuses_a_character_device(finished_run, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    before = set(os.listdir("/dev"))
    capsys.readouterr()
    assert main(["export", str(finished_run), "--format", "torchscript", "--out", "/dev/full"]) == 2
    assert "character device" in one_error_line(capsys)
    assert set(os.listdir("/dev")) == before
    assert not Path("/dev/full").is_file()


def test_file_exporters_refuse_a_folder_and_the_folder_exporter_refuses_a_file(finished_run, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("mine")
    assert main(["export", str(finished_run), "--format", "onnx", "--out", str(tmp_path / "folder")]) == 2
    assert "is a folder, not a regular file" in one_error_line(capsys)
    assert main(["export", str(finished_run), "--format", "safetensors", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert (tmp_path / "file").read_text() == "mine" and names(tmp_path / "folder") == []


def test_run_compare_and_schema_outputs_refuse_a_fifo(tmp_path, capsys):
    project = write_project(tmp_path, epochs=1)
    pipe = fifo(tmp_path)
    before = names(tmp_path)
    for argv in (["train", str(project), "--out", str(pipe)],
                 ["compare", str(project), "--strategies", "probe", "--out", str(pipe)],
                 ["compare", str(project), "--strategies", "probe", "--out", str(tmp_path / "cmp"), "--json", str(pipe)],
                 ["schema", "--out", str(pipe)]):
        assert main(argv) == 2, argv
        assert "FIFO" in one_error_line(capsys), argv
        assert names(tmp_path) == before, argv  # nothing trained, nothing written


def test_an_output_path_too_long_for_the_os(finished_run, tmp_path, capsys):
    deep = tmp_path.joinpath(*["d" * 200] * 25) / "model.onnx"
    for fmt in ("onnx", "safetensors"):
        assert main(["export", str(finished_run), "--format", fmt, "--out", str(deep)]) == 2
        err = one_error_line(capsys)
        assert "the path is too long" in err and len(err) < 400, err
    assert names(tmp_path) == []


# --- 2. SIGTERM and SIGHUP stop like Ctrl-C -------------------------------------------------------------

@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_mid_epoch_stops_with_a_checkpoint_and_resumes(tmp_path, sig, code):
    project = write_project(tmp_path, epochs=3000)  # still running when the signal comes, however fast epochs get
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", str(project), "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 240
    while not (run / "metrics.jsonl").exists() or '"step"' not in (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == code, output
    assert f"{signal.Signals(sig).name}: stopping after this batch" in output and "checkpoint written to" in output
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped"
    assert (run / "checkpoints" / "last.pt").is_file()
    assert not list(run.rglob(".*.tmp"))
    from workbench.training.checkpoint import load_checkpoint

    target = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] + 1
    assert main(["train", "--resume", str(run), "--epochs", str(target)]) == 0
    steps = [json.loads(x)["global_step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert steps == list(range(1, len(steps) + 1))
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


# --- 3. a full disk mid-run -------------------------------------------------------------------------------

class _FillsUp:
    """A metrics file on a disk with ``room`` bytes left: the write that crosses it lands half, then ENOSPC."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            written = self.real.write(data[: self.room])
            self.room = 0
            if written:
                return written  # a short write, as the kernel gives one; the next call fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_disk_that_fills_mid_run_is_a_clean_stop(tmp_path, capsys, monkeypatch):
    import workbench.training.metrics as metrics
    from workbench.training.checkpoint_writer import CheckpointWriter
    from workbench.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "CHECKPOINT_INTERVAL_S", 0.0)  # every epoch's checkpoint is written
    monkeypatch.setattr(CheckpointWriter, "MAX_WRITE_SHARE", float("inf"))
    project = write_project(tmp_path, epochs=3)
    run = tmp_path / "run"
    real_open = open
    # The first epoch's lines fit (about 1.2 KB); the disk fills during the second epoch.
    monkeypatch.setattr(metrics, "open", lambda *a, **k: _FillsUp(real_open(*a, **k), 1800), raising=False)
    assert main(["train", str(project), "--out", str(run)]) == 2
    err = error_line(capsys)
    assert "the file system at" in err and "is full" in err and "needed" in err, err
    assert "training of epoch 1, batch 3;" in err, err
    assert re.search(r"the last good checkpoint is kept in .*last.pt \(it resumes at epoch 1, batch 0\)", err), err
    assert "--resume" in err, err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "is full" in status["message"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines)  # no torn line
    assert (run / "checkpoints" / "last.pt").is_file() and not list(run.rglob(".*.tmp"))
    monkeypatch.undo()  # space freed: the run goes on from its checkpoint
    assert main(["train", "--resume", str(run)]) == 0
    steps = [json.loads(x)["global_step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 3 * 3
