"""Faults around files: full and read-only disks, damaged run folders, non-finite weights, file modes.

The disk-full cases write to a real 2 MB tmpfs (needs root to mount; the suite runs as root in CI
and here). Every case must end in one clear error naming the path, with no temp file left.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.test_faults import one_error_line, write_images, write_project
from workbench.atomic import atomic_path, atomic_write_text
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.export import export_model
from workbench.project import load_project, save_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MB file system (tmpfs), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def resnet_and_spec():
    import timm

    from workbench.backbone import LoadRequest
    from workbench_plugins.timm_source import spec_from_timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    return model, spec_from_timm(model, LoadRequest("resnet18", input_size=(3, 32, 32)), pretrained=False)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


@pytest.mark.slow
def test_safetensors_export_on_a_full_disk(small_fs: Path) -> None:
    model, spec = resnet_and_spec()
    with pytest.raises(WorkbenchError, match=rf"cannot write {small_fs}/out/model.safetensors: no space left on "
                                             r"device \(.* free there\)"):
        export_model(model, spec, "safetensors", small_fs / "out")
    assert not any(name.endswith(".tmp") for name in files_in(small_fs))
    assert not (small_fs / "out" / "model.safetensors").exists()


@pytest.mark.slow
def test_checkpoint_write_on_a_full_disk(small_fs: Path) -> None:
    from workbench.training.checkpoint_file import Checkpoint, save_checkpoint

    target = small_fs / "checkpoints" / "last.pt"
    with pytest.raises(WorkbenchError, match=rf"cannot write {target}: no space left on device"):
        save_checkpoint(target, Checkpoint(0, 0, 0, {"w": torch.zeros(1_000_000)}, {}, [], [], [], [], {}))
    assert files_in(small_fs) == ["checkpoints"]


@pytest.mark.slow
def test_torchscript_export_on_a_full_disk_does_not_abort_the_process(small_fs: Path) -> None:
    """torch's file writer used to std::terminate (exit 134) and leave a 3 MB temp file."""
    script = textwrap.dedent(f"""
        import sys
        from tests.test_faults_io import resnet_and_spec
        from workbench.errors import WorkbenchError
        from workbench.export import export_model
        model, spec = resnet_and_spec()
        try:
            export_model(model, spec, "torchscript", {str(small_fs / "m.pt")!r})
        except WorkbenchError as exc:
            print(f"error: {{exc}}", file=sys.stderr)
            sys.exit(2)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"cannot write {small_fs}/m.pt: no space left on device" in proc.stderr
    assert files_in(small_fs) == []


@pytest.mark.slow
def test_read_only_output_folder(small_fs: Path, tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "data")
    project = write_project(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    assert main(["train", str(project), "--out", str(small_fs / "run")]) == 2
    assert f"{small_fs} is on a read-only file system" in one_error_line(capsys)
    with pytest.raises(WorkbenchError, match=f"cannot write {small_fs}/p.toml: the file system is read-only"):
        save_project(load_project(project), small_fs / "p.toml")


def test_no_exporter_writes_non_finite_weights(tmp_path: Path) -> None:
    model, spec = resnet_and_spec()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
        model.bn1.running_var[0] = float("inf")
    for fmt, out in (("safetensors", "st"), ("torchscript", "m.pt"), ("onnx", "m.onnx")):
        with pytest.raises(WorkbenchError, match=r"refusing to export: 2 tensor\(s\) hold NaN or inf "
                                                 r"\(bn1.running_var, fc.weight\)"):
            export_model(model, spec, fmt, tmp_path / out)
    assert files_in(tmp_path) == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    write_images(folder / "data")
    assert main(["train", str(write_project(folder)), "--out", str(folder / "my run")]) == 0
    return folder / "my run"


@pytest.mark.slow
def test_truncated_weights_in_a_run_folder(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "exp")]) == 2
    line = one_error_line(capsys)
    assert f"cannot read {weights}: " in line and "truncated or corrupt file" in line
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_spec_json_that_is_a_list(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "spec.json").write_text(json.dumps([1, 2, 3]))
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "exp")]) == 2
    assert "spec.json is damaged: expected a JSON object, not a list" in one_error_line(capsys)
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_atomic_files_honour_the_umask(tmp_path: Path, finished_run: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_project(load_project(finished_run / "project.toml"), tmp_path / "p.toml")
        assert main(["export", str(finished_run), "--format", "safetensors", "--out", str(tmp_path / "exp")]) == 0
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    for name in ("a.txt", "p.toml", "exp/model.safetensors", "exp/config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    assert (finished_run / "spec.json").stat().st_mode & 0o044 == 0o044  # readable by others like any file


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert files_in(tmp_path) == []


@pytest.mark.slow
def test_resume_hint_quotes_a_path_with_spaces(tmp_path: Path) -> None:
    from workbench.data import open_data
    from workbench.training.reports import StateReport, StepReport
    from workbench.training.trainer import Trainer
    from workbench.workspace import Workspace

    write_images(tmp_path / "data", per_class=8)
    plan = load_project(write_project(tmp_path))
    ws = Workspace.from_plan(plan)
    data = open_data(plan.data, plan.base_dir, ws.backbone.spec, augment=False)
    run_dir = tmp_path / "my runs" / "first try"
    trainer = Trainer(ws, data, run_dir)
    messages = []
    for report in trainer.run():
        if isinstance(report, StepReport):
            trainer.request_stop()
        elif isinstance(report, StateReport):
            messages.append(report.message)
    hint = next(m for m in messages if "resume with" in m)
    assert f"--resume {shlex.quote(str(run_dir))})" in hint and "'" in shlex.quote(str(run_dir))
