"""`workbench train` / `export` / `demo` as a user runs them, on real image folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.cli import main

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process

CLASSES = ("red", "green", "blue")


def write_image_folder(root: Path, per_class: int = 8, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[..., c] += 160  # a learnable colour signal
            fmt = ("png", "jpg", "webp", "bmp")[i % 4]
            Image.fromarray(pixels).save(folder / f"{i}.{fmt}")
    return root


def write_project(tmp_path: Path, epochs: int = 2, extra: str = "") -> Path:
    write_image_folder(tmp_path / "data")
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "timm"
        name = "resnet18"
        num_classes = 3
        input_size = [3, 32, 32]

        [freeze]
        frozen = ["conv1", "bn1", "layer1", "layer2"]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = {epochs}
        batch_size = 6
        lr = 0.003
        num_workers = 0
        augment = false
    ''') + extra)
    return project


def test_train_writes_run_folder_metrics_and_checkpoints(tmp_path, capsys):
    project = write_project(tmp_path)
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2: train loss" in out and "val acc" in out
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if line["type"] == "epoch"] == [0, 1]
    assert sum(line["type"] == "step" for line in lines) == 2 * 3  # 18 train images / batch 6
    assert (run / "checkpoints" / "last.pt").exists() and (run / "model.safetensors").exists()
    spec = json.loads((run / "spec.json").read_text())
    assert spec["label_names"] == sorted(CLASSES)
    # Overrides and the default run folder beside the project file.
    assert main(["train", str(project), "--epochs", "1", "--batch-size", "9"]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    steps = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert sum(s["type"] == "step" for s in steps) == 2


def test_ctrl_c_finishes_batch_writes_checkpoint_exits_130_then_resume(tmp_path):
    project = write_project(tmp_path, epochs=3000)  # still running when interrupted, however fast epochs get
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", str(project), "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 240
    while not (run / "metrics.jsonl").exists() or "step" not in (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, output
    assert "stopping after this batch" in output and "checkpoint written to" in output
    assert (run / "checkpoints" / "last.pt").exists()
    steps_before = (run / "metrics.jsonl").read_text().count('"type": "step"')
    assert 0 < steps_before < 3000 * 3
    # Resume continues from the checkpoint (for one more epoch's worth, via --epochs).
    from workbench.training.checkpoint_file import load_checkpoint

    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    target = ckpt.epoch + 1
    assert main(["train", "--resume", str(run), "--epochs", str(target)]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["type"] == "step"]
    assert [s["global_step"] for s in steps] == list(range(1, len(steps) + 1))  # no step repeated or skipped
    assert lines[-1]["type"] == "epoch" and lines[-1]["epoch"] == target - 1


def test_bad_data_inputs_are_one_line_errors(tmp_path, capsys):
    project = write_project(tmp_path)
    text = project.read_text()
    project.write_text(text.replace('path = "data"', 'path = "nowhere"'))
    assert main(["train", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nowhere" in err and err.count("\n") == 0
    project.write_text(text.replace("num_classes = 3", "num_classes = 5"))
    assert main(["train", str(project)]) == 2
    assert "the data has 3 classes (blue, green, red) but the model's head has 5 outputs" in capsys.readouterr().err
    assert main(["train", str(project), "--adapt-head", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    (tmp_path / "data" / "red" / "broken.png").write_bytes(b"not an image")
    project.write_text(text)
    assert main(["train", str(project), "--epochs", "1", "--out", str(tmp_path / "r2")]) == 0
    assert "broken.png" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "no_run")]) == 2
    assert "project file not found" in capsys.readouterr().err


def test_onnx_model_project_trains_and_exports_back_to_onnx(tmp_path, capsys):
    """An ONNX file as the model: converted, linear-probed on an image folder, exported to ONNX."""
    import onnx
    import timm
    import torch

    write_image_folder(tmp_path / "data")
    model = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(tmp_path / "model.onnx"), input_names=["input"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    (tmp_path / "project.toml").write_text(textwrap.dedent('''
        [model]
        source = "onnx"
        name = "model.onnx"
        num_classes = 3
        mean = [0.5, 0.5, 0.5]
        std = [0.5, 0.5, 0.5]

        [freeze]
        frozen = [""]
        unfrozen = ["fc"]

        [data]
        path = "data"
        val_split = 0.25

        [train]
        epochs = 2
        batch_size = 6
        num_workers = 0
        augment = false
    '''))
    assert main(["train", str(tmp_path / "project.toml"), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "training onnx:model" in out and "1,539 of 11,168,451 parameters trainable" in out
    assert "caching the frozen trunk" in out and "epoch 2/2" in out
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(tmp_path / "out.onnx")]) == 0
    exported = onnx.load(str(tmp_path / "out.onnx"))
    meta = {p.key: p.value for p in exported.metadata_props}
    assert json.loads(meta["label_names"]) == sorted(CLASSES) and json.loads(meta["mean"]) == [0.5, 0.5, 0.5]


def test_console_script_ends_the_process_after_flushing_threads_and_atexit_but_without_teardown(tmp_path):
    """`workbench` (the installed script) exits with main's code right after the work: buffered output,
    other threads and atexit handlers finish; interpreter teardown (finalizers of live objects) is skipped."""
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from workbench.cli import entry

        out = Path({str(tmp_path)!r})

        class Teardown:
            def __del__(self):
                (out / "teardown").write_text("ran")

        kept = Teardown()

        def fake_main(argv=None):
            atexit.register(lambda: (out / "atexit").write_text("ran"))
            threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
            sys.stdout.write("x" * 100_000)  # a pipe: block-buffered until flushed
            return 3

        entry.main = fake_main
        sys.exit(entry.run())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "x" * 100_000
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
    assert not (tmp_path / "teardown").exists()


def test_installed_console_script_is_run_and_works():
    """The installed `workbench` command calls ``run`` (the fast exit), and the script itself starts."""
    from importlib.metadata import entry_points

    from workbench.cli import run

    (script,) = entry_points(group="console_scripts", name="workbench")
    assert script.load() is run
    proc = subprocess.run([str(Path(sys.executable).with_name("workbench")), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: workbench")


def test_console_script_leaves_the_window_to_its_own_teardown(tmp_path):
    """After the window closes, `workbench` exits through the interpreter's own teardown (Qt objects have
    their own order): live objects' finalizers run. The window is a `workbench.gui` entry point found first."""
    site = tmp_path / "site"
    (site / "fake_window-0.dist-info").mkdir(parents=True)
    (site / "fake_window-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-window\nVersion: 0\n")
    (site / "fake_window-0.dist-info" / "entry_points.txt").write_text("[workbench.gui]\na_fake = fake_window:launch\n")
    (site / "fake_window.py").write_text("def launch(project=None, demo=False):\n    print('window closed')\n    return 0\n")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from workbench.cli import run

        class Teardown:
            def __del__(self):
                (Path({str(tmp_path)!r}) / "teardown").write_text("ran")

        kept = Teardown()
        sys.argv = ["workbench"]
        sys.exit(run())
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "window closed\n"  # the fake window ran, not the installed one
    assert (tmp_path / "teardown").read_text() == "ran"
