"""Smoke-check a built desktop bundle: run it the way a user would and check what it answers.

    python packaging/check_bundle.py [dist/model-surgery-workbench]      (or: bash scripts/bundle.sh --check)

Run with the test environment's Python (it has scikit-image's photos and the project, to write the
inputs); every command runs the bundle's own executable, offscreen, in a scratch folder. Checks:
the built-in plugins all load; ``predict efficientnet_lite0 --pretrained`` names the right ImageNet
class of two photos; ``demo --headless --epochs 1`` trains and exports; the window opens on the
demo and on a project file given as the only argument (a desktop entry's ``%f``), becomes usable
and closes cleanly; no output mentions a skipped plugin or a traceback. Prints the bundle's size
and the time from launch to a usable window. Exit status 0 when every check passed, else 1.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "model-surgery-workbench"
# What `plugins` lists: the project's own entry-point groups (pyproject.toml is the one list of built-ins).
LISTED_GROUPS = ("workbench.model_sources", "workbench.datasets", "workbench.exporters")
# ImageNet-1k classes of the photos: chelsea is a tabby (281-285 are the domestic cats), coffee an espresso.
PHOTOS = {"chelsea": range(281, 286), "coffee": range(967, 968)}
# A project file as a user writes one (README): another model than the demo's, random init.
PROJECT = """[model]
source = "timm"
name = "resnet18"
pretrained = false
num_classes = 10

[data]
dataset = "digits"
"""
BAD_OUTPUT = ("was skipped", "Traceback (most recent call last)", "No module named")


class CheckFailed(Exception):
    pass


def built_in_plugins() -> dict[str, set[str]]:
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    return {group: set(entry_points[group]) for group in LISTED_GROUPS}


class Bundle:
    def __init__(self, folder: Path, scratch: Path) -> None:
        self.exe = folder / NAME
        if not self.exe.is_file():
            raise CheckFailed(f"no bundle at {folder} (build one with: bash scripts/bundle.sh)")
        self.scratch = scratch
        home = scratch / "home"
        home.mkdir()
        # Nothing from the user's own settings, caches or hub downloads; the same as a fresh account.
        self.env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                    "XDG_CACHE_HOME": str(home / ".cache"), "WORKBENCH_CACHE_DIR": str(home / ".cache" / "wb"),
                    "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": ""}
        self.env.pop("VIRTUAL_ENV", None)
        self.cpu_s = 0.0

    def run(self, *args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([str(self.exe), *args], cwd=self.scratch, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of the run (its worker processes included): a figure that other load on the machine
        # does not inflate the way it does wall time.
        self.cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        output = done.stdout + done.stderr
        bad = [line for line in output.splitlines() if any(b in line for b in BAD_OUTPUT)]
        if done.returncode != 0 or bad:
            raise CheckFailed(f"`{NAME} {' '.join(args)}` exited {done.returncode}"
                              + (f"; it printed: {bad[0]}" if bad else "") + f"\n{output[-3000:]}")
        return done


def check_plugins(bundle: Bundle) -> str:
    listing = json.loads(bundle.run("plugins", "--json", timeout=300).stdout)
    if listing["failed"]:
        raise CheckFailed(f"plugins failed to load: {listing['failed']}")
    for group, expected in built_in_plugins().items():
        found = {p["name"] for p in listing["plugins"].get(group, [])}
        if not expected <= found:
            raise CheckFailed(f"{group}: missing {sorted(expected - found)} (listed: {sorted(found)})")
    listed = ", ".join(f"{len(v)} {k.split('.')[1]}" for k, v in built_in_plugins().items())
    return f"{listed}, none skipped ({bundle.cpu_s:.1f} CPU-s)"


def check_predict(bundle: Bundle) -> str:
    from PIL import Image
    from skimage import data

    photos = []
    for name in PHOTOS:
        path = bundle.scratch / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        photos.append(str(path))
    answers = json.loads(bundle.run("predict", "efficientnet_lite0", "--pretrained", "--json", *photos,
                                    timeout=600).stdout)
    said = []
    for (name, classes), answer in zip(PHOTOS.items(), answers, strict=True):
        top = answer["top"][0]
        if top["index"] not in classes:
            raise CheckFailed(f"{name}.png: top-1 is class {top['index']} ({top['label']}), expected one of "
                              f"{list(classes)}")
        said.append(f"{name} -> {top['label']} ({top['prob']:.0%})")
    return "; ".join(said)


def check_demo_headless(bundle: Bundle) -> str:
    run_dir = bundle.scratch / "demo-run"
    started = time.monotonic()
    bundle.run("demo", "--headless", "--epochs", "1", "--workers", "0", "--out", str(run_dir), timeout=1800)
    exported = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "export").rglob("*") if p.is_file())
    if not any(name.endswith(".safetensors") for name in exported):
        raise CheckFailed(f"the demo exported no .safetensors file into {run_dir / 'export'}: {exported}")
    return f"trained 1 epoch and exported {', '.join(exported)} in {time.monotonic() - started:.0f} s"


def open_window(bundle: Bundle, *args: str) -> dict:
    """Launch the window offscreen with the probe (packaging/launch.py); its report once it was usable."""
    report_path = bundle.scratch / "window-report.json"
    report_path.unlink(missing_ok=True)
    launched = time.time()
    bundle.run(*args, timeout=900, env={"WORKBENCH_BUNDLE_PROBE": str(report_path)})
    if not report_path.is_file():
        raise CheckFailed(f"`{NAME} {' '.join(args)}` exited without the window becoming usable")
    report = json.loads(report_path.read_text())
    report["seconds_to_usable"] = report["usable_at"] - launched
    report["cpu_s"] = bundle.cpu_s
    problems = []
    if not report["usable"]:
        problems.append("timed out" if report["timed_out"] else f"an error dialog: {report['dialogs']}")
    if not report["closed"]:
        problems.append("the window refused to close")
    if report["plugin_failures"]:
        problems.append(f"plugins skipped: {report['plugin_failures']}")
    bad_log = [line for line in report["log"] if any(b in line for b in BAD_OUTPUT)]
    if bad_log:
        problems.append(f"the log says: {bad_log}")
    if problems:
        raise CheckFailed(f"window `{' '.join(args)}`: " + "; ".join(problems))
    return report


def evict_from_page_cache(folder: Path) -> None:
    """Drop the bundle's files from the page cache, so the next launch reads them from disk like a first one."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def check_window_demo(bundle: Bundle) -> str:
    evict_from_page_cache(bundle.exe.parent)  # a cold start: what a user waits for the first time
    report = open_window(bundle, "demo")
    if report["model"] != "efficientnet_lite0":
        raise CheckFailed(f"the window opened on {report['model']!r}, not the demo's efficientnet_lite0")
    return (f"usable {report['seconds_to_usable']:.1f} s after a cold launch ({report['cpu_s']:.1f} CPU-s "
            "launch to exit), closed cleanly")


def check_window_project(bundle: Bundle) -> str:
    project = bundle.scratch / "digits.workbench.toml"
    project.write_text(PROJECT)
    report = open_window(bundle, str(project))  # what a file manager runs through the desktop entry's %f
    if report["project_path"] != str(project) or report["model"] != "resnet18":
        raise CheckFailed(f"the window shows {report['project_path']!r} ({report['model']}), not {project}")
    return (f"{project.name} usable {report['seconds_to_usable']:.1f} s after a warm launch ({report['cpu_s']:.1f} "
            "CPU-s launch to exit), closed cleanly")


CHECKS: list[tuple[str, Callable[[Bundle], str]]] = [
    ("plugins", check_plugins),
    ("predict --pretrained", check_predict),
    ("demo --headless --epochs 1", check_demo_headless),
    ("window on the demo", check_window_demo),
    ("window on a project file", check_window_project),
]


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv and argv[0] else ROOT / "dist" / NAME
    with tempfile.TemporaryDirectory(prefix="bundle-check-") as scratch:
        try:
            bundle = Bundle(folder.resolve(), Path(scratch))
        except CheckFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        print(f"bundle: {bundle.exe} ({size / 2**30:.2f} GiB)")
        failed = 0
        for name, check in CHECKS:
            started = time.monotonic()
            try:
                said = check(bundle)
            except (CheckFailed, subprocess.TimeoutExpired) as exc:
                failed += 1
                print(f"FAIL  {name}: {exc}")
                continue
            print(f"ok    {name} ({time.monotonic() - started:.0f} s): {said}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
