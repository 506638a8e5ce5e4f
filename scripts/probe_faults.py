"""Hostile inputs and faults through the real CLI and API (issue 20's list): how many end cleanly.

    .venv/bin/python scripts/probe_faults.py            # prints one line per case, then the count

A CLI case is clean when the command exits 2 with exactly one ``error:`` line, no traceback, and
leaves the paths it refused as they were (a FIFO stays a FIFO, no temp file beside it, no run
folder for a refused compare). An API case is clean when it raises a ``WorkbenchError``. The two
fault cases are clean when they end as documented: SIGTERM mid-epoch exits 143 with a "stopped"
run that resumes; a disk that fills mid-run exits 2 with "failed" in status.json, whole metrics
lines and the last checkpoint kept. Everything runs in a temp folder on a 32x32 resnet18.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PROJECT = """
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
"""


def write_folder(root: Path, extra: str = "", epochs: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "green", "blue")):
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            pixels = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            pixels[..., c] += 160
            Image.fromarray(pixels).save(root / "data" / name / f"{i}.png")
    project = root / "project.toml"
    project.write_text(textwrap.dedent(PROJECT.format(epochs=epochs)) + extra)
    return project


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from workbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException:  # a traceback: not clean
            traceback.print_exc(file=err)
            code = 1
    return code, out.getvalue(), err.getvalue()


def clean_cli(argv: list[str]) -> str | None:
    """None when clean, else why not."""
    code, out, err = run_cli(argv)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if "Traceback" in err or "Traceback" in out:
        return f"traceback: {err.strip().splitlines()[-1][:160]}"
    if code != 2:
        return f"exit {code}"
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    return None


def is_fifo(path: Path) -> bool:
    return path.exists() and (os.stat(path).st_mode & 0o170000) == 0o010000


class Probe:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.results: list[tuple[str, str | None]] = []
        self.count = 0

    def folder(self, extra: str = "", epochs: int = 1) -> Path:
        self.count += 1
        folder = self.tmp / f"case{self.count}"
        folder.mkdir()
        write_folder(folder, extra, epochs)
        return folder

    def record(self, name: str, why: str | None) -> None:
        self.results.append((name, why))
        print(f"{'clean    ' if why is None else 'NOT CLEAN'}  {name}" + (f"  ({why})" if why else ""), flush=True)

    def cli(self, name: str, argv: Callable[[Path], list[str]], extra: str = "",
            untouched: Callable[[Path], str | None] | None = None) -> None:
        folder = self.folder(extra)
        before = sorted(p.name for p in folder.iterdir())
        why = clean_cli(argv(folder))
        if why is None and untouched is not None:
            why = untouched(folder)
        elif why is None and sorted(p.name for p in folder.iterdir()) != before:
            why = "wrote into the folder it refused"
        self.record(name, why)

    def api(self, name: str, call: Callable[[], object]) -> None:
        from workbench.errors import WorkbenchError

        try:
            call()
        except WorkbenchError:
            self.record(name, None)
        except BaseException as exc:  # noqa: BLE001 - any other exception is the finding
            self.record(name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
        else:
            self.record(name, "accepted")


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="probe-faults-") as name:
        tmp = Path(name)
        base = tmp / "base"
        base.mkdir()
        project = write_folder(base)
        run = base / "run"
        code, _, err = run_cli(["train", str(project), "--out", str(run)])
        if code != 0:
            print(err)
            return 1
        probe = Probe(tmp)
        writers(probe, run)
        compare_cases(probe)
        plan_cases(probe)
        damaged_runs(probe, run)
        faults(probe)
        clean = sum(why is None for _, why in probe.results)
        print(f"\n{len(probe.results)} inputs tried, {clean} clean errors")
        return 0 if clean == len(probe.results) else 1


def _fifo_kept(name: str = "pipe") -> Callable[[Path], str | None]:
    def check(folder: Path) -> str | None:
        if not is_fifo(folder / name):
            return "the FIFO was replaced"
        extra = [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]
        return f"left {extra}" if extra else None

    return check


def writers(probe: Probe, run: Path) -> None:
    def with_fifo(argv: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        def make(folder: Path) -> list[str]:
            os.mkfifo(folder / "pipe")
            return argv(folder)

        return make

    for fmt in ("safetensors", "torchscript", "onnx"):
        probe.cli(f"export --format {fmt} --out FIFO",
                  with_fifo(lambda f, fmt=fmt: ["export", str(run), "--format", fmt, "--out", str(f / "pipe")]),
                  untouched=_fifo_kept())
    def with_device(folder: Path) -> list[str]:  # a device node in the temp folder, never the real /dev
        os.mknod(folder / "full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        return ["export", str(run), "--format", "torchscript", "--out", str(folder / "full")]

    if os.geteuid() == 0:
        probe.cli("export --format torchscript --out DEVICE (like /dev/full)", with_device,
                  untouched=lambda f: None if stat.S_ISCHR(os.stat(f / "full").st_mode) else "the device was replaced")
    probe.cli("export --format onnx --out FOLDER", lambda f: ["export", str(run), "--format", "onnx", "--out", str(f / "data")])
    probe.cli("export --format safetensors --out FILE",
              lambda f: ["export", str(run), "--format", "safetensors", "--out", str(f / "project.toml")])
    probe.cli("train --out FIFO", with_fifo(lambda f: ["train", str(f / "project.toml"), "--out", str(f / "pipe")]),
              untouched=_fifo_kept())
    probe.cli("compare --out FIFO", with_fifo(lambda f: ["compare", str(f / "project.toml"), "--strategies", "probe",
                                                         "--out", str(f / "pipe")]), untouched=_fifo_kept())
    probe.cli("compare --json FIFO", with_fifo(lambda f: ["compare", str(f / "project.toml"), "--strategies", "probe",
                                                          "--out", str(f / "cmp"), "--json", str(f / "pipe")]),
              untouched=_fifo_kept())
    probe.cli("schema --out FIFO", with_fifo(lambda f: ["schema", "--out", str(f / "pipe")]), untouched=_fifo_kept())
    probe.cli("compare --out FILE", lambda f: ["compare", str(f / "project.toml"), "--strategies", "probe",
                                               "--out", str(f / "project.toml")])
    long = "/".join(["d" * 200] * 25)
    probe.cli("export --out (path past the OS limit)",
              lambda f: ["export", str(run), "--format", "onnx", "--out", str(f / long / "m.onnx")])


def compare_cases(probe: Probe) -> None:
    def compare(*args: str) -> Callable[[Path], list[str]]:
        return lambda f: ["compare", str(f / "project.toml"), "--out", str(f / "cmp"), *args]

    for label, args, extra in [
        ("compare --epochs 1000000", ("--strategies", "probe", "--epochs", "1000000"), ""),
        ("[[compare]] epochs = 10000000000000", ("--strategies", "x"), '[[compare]]\nname = "x"\nepochs = 10000000000000\n'),
        ("two [[compare]] tables named alike", (), '[[compare]]\nname = "a"\n[[compare]]\nname = "a"\n'),
        ("--strategies freeze:1,freeze:01", ("--strategies", "freeze:1,freeze:01"), ""),
        ("--device tpu", ("--strategies", "probe", "--device", "tpu"), ""),
        ("[[compare]] lr = nan", ("--strategies", "x"), '[[compare]]\nname = "x"\nlr = nan\n'),
        ("[[compare]] lr = inf", ("--strategies", "x"), '[[compare]]\nname = "x"\nlr = inf\n'),
        ('[[compare]] frozen = ["layer9"]', ("--strategies", "x"), '[[compare]]\nname = "x"\nfrozen = ["layer9"]\n'),
        ("--strategies discriminative:1/0", ("--strategies", "discriminative:1/0"), ""),
        ("--strategies discriminative:0/0", ("--strategies", "discriminative:0/0"), ""),
        ("--strategies freeze:\u00b2", ("--strategies", "freeze:\u00b2"), ""),
        ("--strategies freeze:\u0663", ("--strategies", "freeze:\u0663"), ""),
    ]:
        probe.cli(label, compare(*args), extra=extra)


def plan_cases(probe: Probe) -> None:
    from workbench.backbone import LoadRequest
    from workbench.plan import FinetunePlan

    plan = FinetunePlan()
    for key, value in (("batch_size", 0), ("lr", float("nan")), ("epochs", 0)):
        probe.api(f"plan.train.{key} = {value!r}", lambda key=key, value=value: setattr(plan.train, key, value))
    probe.api("LoadRequest('resnet18', num_classes=-2)", lambda: LoadRequest("resnet18", num_classes=-2))
    for head in ('cut = "fc"', "hidden = [1000000000]"):
        probe.cli(f"[head] {head}", lambda f: ["train", str(f / "project.toml"), "--out", str(f / "run")],
                  extra=f"\n[head]\n{head}\n")
    vit = '\n[head]\ncut = "pos_drop"\n'

    def vit_project(f: Path) -> list[str]:
        text = (f / "project.toml").read_text().replace('"resnet18"', '"test_vit"')
        (f / "project.toml").write_text(text.replace('frozen = ["conv1", "bn1", "layer1", "layer2"]', "frozen = []"))
        return ["inspect", str(f / "project.toml")]

    probe.cli("test_vit [head] cut outside timm's cut points", vit_project, extra=vit)


def damaged_runs(probe: Probe, run: Path) -> None:
    import shutil

    def copy(folder: Path) -> Path:
        target = folder / "run"
        shutil.copytree(run, target)
        return target

    def arch(folder: Path) -> list[str]:
        target = copy(folder)
        text = (target / "project.toml").read_text()
        (target / "project.toml").write_text(text.replace('name = "resnet18"', 'name = "resnet34"'))
        return ["train", "--resume", str(target), "--epochs", "2"]

    def labels(folder: Path) -> list[str]:
        target = copy(folder)
        text = (target / "project.toml").read_text().replace("num_classes = 3", "num_classes = 4")
        (target / "project.toml").write_text(text.replace("label_names = [\n", 'label_names = [\n    "x",\n'))
        return ["evaluate", str(target)]

    def truncated(folder: Path) -> list[str]:
        target = copy(folder)
        os.truncate(target / "initial_trainable.safetensors", 100)
        return ["diff", str(target)]

    def pickle_(folder: Path) -> list[str]:
        import torch

        target = copy(folder)
        torch.save({"format": 1, "x": _Payload()}, target / "checkpoints" / "last.pt")
        return ["train", "--resume", str(target)]

    for label, argv in (("train --resume after project.toml names another architecture", arch),
                        ("evaluate after project.toml gets 4 labels", labels),
                        ("diff with a truncated initial_trainable.safetensors", truncated),
                        ("train --resume with a code-carrying last.pt", pickle_)):
        probe.cli(label, argv, untouched=lambda f: None)


class _Payload:
    def __reduce__(self):  # what a malicious pickle carries
        return (print, ("pwned",))


def faults(probe: Probe) -> None:
    folder = probe.folder(epochs=3000)
    run = folder / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", str(folder / "project.toml"),
                             "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    deadline = time.time() + 300
    while (not (run / "metrics.jsonl").exists() or '"step"' not in (run / "metrics.jsonl").read_text()) \
            and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=300)
    status = json.loads((run / "status.json").read_text()).get("state") if (run / "status.json").exists() else None
    why = None if code == 143 and status == "stopped" and (run / "checkpoints" / "last.pt").is_file() else \
        f"exit {code}, status {status}"
    probe.record("SIGTERM mid-epoch", why)
    probe.record("a disk that fills mid-run", _disk_fills(probe.folder(epochs=3)))


def _disk_fills(folder: Path) -> str | None:
    import errno

    import workbench.training.metrics as metrics

    real_open = open

    class FillsUp:
        def __init__(self, real, room: int) -> None:
            self.real, self.room = real, room

        def write(self, data):
            data = bytes(data)
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return self.real.write(data)

        def __getattr__(self, name):
            return getattr(self.real, name)

    metrics.open = lambda *a, **k: FillsUp(real_open(*a, **k), 1800)  # type: ignore[attr-defined]
    try:
        code, _, err = run_cli(["train", str(folder / "project.toml"), "--out", str(folder / "run")])
    finally:
        del metrics.open  # type: ignore[attr-defined]
    run = folder / "run"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code != 2 or len(errors) != 1 or "Traceback" in err or "is full" not in errors[0]:
        return f"exit {code}, {len(errors)} error line(s)"
    state = json.loads((run / "status.json").read_text())["state"]
    torn = [line for line in (run / "metrics.jsonl").read_text().splitlines() if not line.endswith("}")]
    kept = (run / "checkpoints" / "last.pt").is_file()
    if state != "failed" or torn or kept != ("last good checkpoint is kept" in errors[0]):
        return f"status {state}, {len(torn)} torn line(s), checkpoint kept: {kept}"
    return None


if __name__ == "__main__":
    sys.exit(main())
