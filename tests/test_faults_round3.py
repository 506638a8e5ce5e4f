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
import stat
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

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx"])
def test_export_refuses_a_fifo_and_creates_nothing_beside_it(finished_run, tmp_path, capsys, fmt):
    target = fifo(tmp_path)
    capsys.readouterr()
    assert main(["export", str(finished_run), "--format", fmt, "--out", str(target)]) == 2
    err = one_error_line(capsys)
    assert "FIFO" in err and str(target) in err, err
    assert names(tmp_path) == ["pipe"]  # no temp file or temp folder beside it
    assert (os.stat(target).st_mode & 0o170000) == 0o010000  # still a FIFO


@pytest.mark.slow
def test_export_refuses_a_character_device(finished_run, tmp_path, capsys):
    """A device node in a temp folder (made like /dev/null): never the real /dev, which a regression would clobber."""
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("making a device node needs root")
    capsys.readouterr()
    assert main(["export", str(finished_run), "--format", "torchscript", "--out", str(device)]) == 2
    assert "character device" in one_error_line(capsys)
    assert stat.S_ISCHR(os.stat(device).st_mode) and names(tmp_path) == ["null"]


@pytest.mark.slow
def test_file_exporters_refuse_a_folder_and_the_folder_exporter_refuses_a_file(finished_run, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("mine")
    assert main(["export", str(finished_run), "--format", "onnx", "--out", str(tmp_path / "folder")]) == 2
    assert "is a folder, not a regular file" in one_error_line(capsys)
    assert main(["export", str(finished_run), "--format", "safetensors", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert (tmp_path / "file").read_text() == "mine" and names(tmp_path / "folder") == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_an_output_path_too_long_for_the_os(finished_run, tmp_path, capsys):
    deep = tmp_path.joinpath(*["d" * 200] * 25) / "model.onnx"
    for fmt in ("onnx", "safetensors"):
        assert main(["export", str(finished_run), "--format", fmt, "--out", str(deep)]) == 2
        err = one_error_line(capsys)
        assert "the path is too long" in err and len(err) < 400, err
    assert names(tmp_path) == []


# --- 2. SIGTERM and SIGHUP stop like Ctrl-C -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_mid_epoch_stops_with_a_checkpoint_and_resumes(tmp_path, sig, code):
    project = write_project(tmp_path, epochs=3000)  # still running when the signal comes, however fast epochs get
    # A constant LR: the schedule does not depend on the epoch count, so a shorter run never stopped compares.
    project.write_text(project.read_text().replace("lr = 0.003", 'lr = 0.003\nscheduler = "constant"'))
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
    from workbench.training.checkpoint_file import load_checkpoint

    target = load_checkpoint(run / "checkpoints" / "last.pt").epoch + 1
    assert main(["train", "--resume", str(run), "--epochs", str(target)]) == 0
    steps = [json.loads(x)["global_step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert steps == list(range(1, len(steps) + 1))
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    if sig == signal.SIGTERM:  # bit-identical to the same run never stopped
        import torch
        from safetensors.torch import load_file

        assert main(["train", str(project), "--out", str(tmp_path / "straight"), "--epochs", str(target)]) == 0
        resumed, straight = load_file(str(run / "model.safetensors")), load_file(str(tmp_path / "straight" / "model.safetensors"))
        assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)


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


@pytest.mark.slow
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


# --- 4. compare checks every strategy like train before the first starts ----------------------------------

def _compare_project(tmp_path: Path, tables: str = "") -> Path:
    from tests.test_compare import write_project as write_compare_project

    return write_compare_project(tmp_path, extra=tables)


COMPARE_CASES = [
    (["--strategies", "probe", "--epochs", "1000000"], "", "epochs must be <= 100,000, not 1,000,000"),
    (["--strategies", "big"], '[[compare]]\nname = "big"\nepochs = 10000000000000\n', "epochs must be <= 100000"),
    ([], '[[compare]]\nname = "a"\n[[compare]]\nname = "a"\nlr = 0.1\n',
     "[[compare]] #2: name 'a' is also the name of [[compare]] #1"),
    (["--strategies", "freeze:1,freeze:01"], "", "strategy listed twice: freeze:01 (freeze:1 and freeze:01 are the same"),
    (["--strategies", "discriminative:0.5,discriminative:1/2"], "", "strategy listed twice"),
    (["--strategies", "probe", "--device", "tpu"], "", "device 'tpu' is not available"),
    (["--strategies", "x"], '[[compare]]\nname = "x"\nlr = nan\n', "lr must be a finite number"),
    (["--strategies", "x"], '[[compare]]\nname = "x"\nlr = inf\n', "lr must be a finite number"),
    (["--strategies", "x"], '[[compare]]\nname = "x"\nfrozen = ["layer9"]\n', "unknown module path 'layer9'"),
    (["--strategies", "x"], '[[compare]]\nname = "x"\nlr = 5.0\n', "lr-too-high"),
    (["--strategies", "discriminative:1/0"], "", "must be a number such as 0.385 or 1/2.6"),
    (["--strategies", "discriminative:0/0"], "", "must be a number such as 0.385 or 1/2.6"),
    (["--strategies", "freeze:\u00b2"], "", "freeze:N needs a whole number"),
    (["--strategies", "freeze:\u0663"], "", "freeze:N needs a whole number"),
    (["--strategies", "discriminative:\u0663"], "", "must be a number such as 0.385 or 1/2.6"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "tables", "message"), COMPARE_CASES)
def test_compare_refuses_before_anything_trains(tmp_path, capsys, args, tables, message):
    project = _compare_project(tmp_path, tables)
    out = tmp_path / "cmp"
    assert main(["compare", str(project), "--out", str(out), *args]) == 2
    err = error_line(capsys)
    assert message in err, err
    assert not out.exists()  # nothing ran, nothing written


@pytest.mark.slow
def test_compare_out_that_is_a_file(tmp_path, capsys):
    project = _compare_project(tmp_path)
    (tmp_path / "afile").write_text("mine")
    assert main(["compare", str(project), "--strategies", "probe", "--out", str(tmp_path / "afile")]) == 2
    assert "--out" in error_line(capsys) and (tmp_path / "afile").read_text() == "mine"


# --- 5. [head] cut at the classifier; a head too big to allocate ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("head", "message"), [
    ('cut = "fc"', "[head] cut = 'fc' keeps the classifier 'fc': the new head would be stacked"),
    ("hidden = [1000000000]", "the new head would have 516,000,000,003 parameters"),
])
def test_head_that_would_stack_or_not_fit_is_refused(tmp_path, capsys, head, message):
    project = write_project(tmp_path, epochs=1)
    project.write_text(project.read_text() + f"\n[head]\n{head}\n")
    for argv in (["inspect", str(project)], ["train", str(project), "--out", str(tmp_path / "run")]):
        assert main(argv) == 2, argv
        assert message in error_line(capsys), argv
    assert not (tmp_path / "run").exists()


# --- 6. the Python API validates what is assigned ---------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "message"), [
    ("batch_size", 0, "[train] batch_size must be >= 1, not 0"),
    ("lr", float("nan"), "[train] lr must be a finite number, not nan"),
    ("epochs", 0, "[train] epochs must be >= 1, not 0"),
    ("epochs", 10**13, "[train] epochs must be <= 100000"),
    ("optimizer", "adam", "[train] optimizer must be one of adamw, sgd, not 'adam'"),
])
def test_assigning_a_bad_value_to_a_plan_is_refused_at_once(key, value, message):
    from workbench.errors import PlanError
    from workbench.plan import FinetunePlan

    plan = FinetunePlan()
    before = getattr(plan.train, key)
    with pytest.raises(PlanError) as caught:
        setattr(plan.train, key, value)
    assert str(caught.value).startswith(message)
    assert getattr(plan.train, key) == before  # the plan is unchanged


def test_assignment_is_checked_in_every_section():
    from workbench.errors import PlanError
    from workbench.plan import FinetunePlan

    plan = FinetunePlan()
    for section, key, value in (("model", "num_classes", -2), ("freeze", "batchnorm", "sometimes"),
                                ("data", "val_split", 1.5), ("model", "input_size", (3, 0, 0))):
        with pytest.raises(PlanError, match=rf"\[{section}\] {key}"):
            setattr(getattr(plan, section), key, value)
    plan.train.lr = 1  # an integer is a fine number
    assert plan.train.lr == 1.0 and isinstance(plan.train.lr, float)


def test_load_request_refuses_a_negative_class_count():
    from workbench.backbone import LoadRequest
    from workbench.errors import ModelLoadError

    for n in (-2, 0, True, 2.5):
        with pytest.raises(ModelLoadError, match="num_classes must be a whole number from 1 to 1,000,000"):
            LoadRequest("resnet18", num_classes=n)
    assert LoadRequest("resnet18", num_classes=3).num_classes == 3


# --- tracebacks that became one-line errors ----------------------------------------------------------------

def _copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


@pytest.mark.slow
def test_resume_with_a_recipe_edited_to_another_architecture(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    status = (run / "status.json").read_text()
    project = run / "project.toml"
    project.write_text(project.read_text().replace('name = "resnet18"', 'name = "resnet34"'))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = error_line(capsys)
    assert "does not fit the recipe" in err and "layer1.2.conv1.weight" in err and "restore it" in err, err
    assert (run / "status.json").read_text() == status  # the finished run is still recorded as finished


@pytest.mark.slow
def test_evaluate_with_a_recipe_edited_to_four_classes(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    project = run / "project.toml"
    text = project.read_text().replace("num_classes = 3", "num_classes = 4")
    project.write_text(text.replace("label_names = [\n", 'label_names = [\n    "extra",\n'))
    for argv in (["evaluate", str(run)], ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "e")]):
        assert main(argv) == 2, argv
        err = error_line(capsys)
        assert "fc.bias [3] saved vs [4] now" in err and "--overwrite" in err, err


@pytest.mark.slow
def test_diff_with_a_truncated_start_record(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path)
    os.truncate(run / "initial_trainable.safetensors", 100)
    assert main(["diff", str(run)]) == 2
    assert "initial_trainable.safetensors is not a readable .safetensors file" in error_line(capsys)


@pytest.mark.slow
def test_a_refused_pickle_never_suggests_turning_the_check_off(finished_run, tmp_path, capsys):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    run = _copy_run(finished_run, tmp_path)
    torch.save({"format": 1, "x": Payload()}, run / "checkpoints" / "last.pt")
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": Payload()}, evil)
    for argv in (["train", "--resume", str(run)], ["inspect", str(evil), "--arch", "resnet18"],
                 ["diff", str(evil), str(run / "model.safetensors")]):
        assert main(argv) == 2, argv
        err = error_line(capsys)
        assert "contains code" in err and "state_dict" in err, (argv, err)
        assert "weights_only" not in err and "add_safe_globals" not in err and "pwned" not in err, (argv, err)


# --- documented behaviour: [head] on timm ViTs that torch.fx cannot trace -----------------------------------

def _vit_project(tmp_path: Path, head: str) -> Path:
    project = write_project(tmp_path, epochs=1)
    text = project.read_text().replace('name = "resnet18"', 'name = "test_vit"')
    text = text.replace('frozen = ["conv1", "bn1", "layer1", "layer2"]', 'frozen = ["patch_embed"]')
    project.write_text(text + f"\n[head]\n{head}\n")
    return project


@pytest.mark.parametrize(("head", "features"), [
    ('pool = "max"', 64), ('pool = "flatten"', 64), ('pool = "none"', 64),  # the pooled classifier input
    ('cut = "patch_embed"\npool = "flatten"', 4 * 64),  # 2x2 patch tokens
    ('cut = "blocks.1"\npool = "flatten"', 4 * 64),  # patch tokens after block 1 (timm drops the class token)
    ('cut = "norm"\npool = "flatten"', 5 * 64),  # the final norm's tokens, class token included
])
def test_head_on_a_vit_with_a_dynamic_image_size(tmp_path, capsys, head, features):
    """timm's test_vit (dynamic_img_size) cannot be traced by fx: it is cut through forward_intermediates."""
    project = _vit_project(tmp_path, head)
    assert main(["inspect", str(project), "--json"]) == 0
    nodes = {n["path"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert nodes["head"]["output_shape"] == [1, 3]
    assert nodes["head"]["params"] == features * 3 + 3  # one Linear from the cut's features to 3 classes


@pytest.mark.slow
def test_a_cut_vit_trains_exports_and_rebuilds(tmp_path, capsys):
    import numpy as np
    import onnxruntime as ort
    import torch

    from workbench.surgery import rebuild_from_config

    project = _vit_project(tmp_path, 'cut = "blocks.1"\npool = "avgmax"\nhidden = [8]')
    run = tmp_path / "run"
    assert main(["train", str(project), "--out", str(run)]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "st")]) == 0
    model = rebuild_from_config(tmp_path / "st").eval()
    assert [n for n, _ in model.named_children() if n == "blocks"] and len(model.blocks) == 2  # blocks 2-5 pruned
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_a_vit_cut_outside_timms_cut_points_lists_them(tmp_path, capsys):
    project = _vit_project(tmp_path, 'cut = "pos_drop"')
    assert main(["inspect", str(project)]) == 2
    err = error_line(capsys)
    assert "timm's own cut points: patch_embed, blocks.0" in err and "head_drop" in err, err


@pytest.mark.slow
def test_a_real_full_disk_at_the_checkpoint_is_a_clean_stop(tmp_path, capsys):
    """A 60 MB tmpfs: the weights file (45 MB) fits, the checkpoint with AdamW state does not."""
    import shutil

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        project = write_project(tmp_path, epochs=1)
        run = small / "run"
        assert main(["train", str(project), "--out", str(run)]) == 2
        err = error_line(capsys)
        assert f"the file system at {small} (holding {run}) is full" in err and "needed (one checkpoint)" in err, err
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "failed" and "is full" in status["message"]
        assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
        assert not list(run.rglob(".*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "compare"])
def test_compile_without_a_cpp_compiler_is_one_error_before_training(tmp_path, capsys, command):
    """The desktop bundle has no C++ compiler: `compile = true` ended in inductor's traceback at the first step."""
    import torch._inductor.config as inductor

    project = write_project(tmp_path, epochs=1, extra="compile = true\n")
    out = tmp_path / "out"
    args = {"train": ["train", str(project), "--out", str(out)],
            "compare": ["compare", str(project), "--strategies", "probe", "--out", str(out)]}[command]
    with inductor.patch({"cpp.cxx": (str(tmp_path / "no-such-g++"),)}):
        assert main(args) == 2
    err = error_line(capsys)
    assert "compile = true needs a C++ compiler on the CPU" in err and "set compile = false" in err, err
    if command == "compare":
        assert not out.exists()  # refused before anything trained or was written
    else:  # the run folder records why it failed (as for any failed start), and holds nothing else
        assert names(out) == [".workbench.lock", "status.json"]
        status = json.loads((out / "status.json").read_text())
        assert status["state"] == "failed" and "needs a C++ compiler" in status["message"]
