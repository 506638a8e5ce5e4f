"""The runs of a project: what each one is, how far it got, and how its recipe differs from the plan.

Qt-free and torch-free: it reads the run folder's small files only (``status.json``,
``metrics.jsonl``, ``project.toml``), so listing a hundred runs is instant.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.run_folder import RunDir

NOT_TRAINED = "initial weights — not trained"


@dataclass
class RunInfo:
    """One run folder, summarised."""

    path: Path
    status: str  # finished | stopped | crashed | failed | running
    started: str  # ISO time the run folder was created
    architecture: str
    epochs_done: int
    epochs_total: int | None
    steps: int
    best_val_accuracy: float | None
    best_epoch: int | None
    last_val_accuracy: float | None
    message: str = ""
    differences: list[str] = field(default_factory=list)  # recipe vs the current plan
    curves: dict[str, list[float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The folder's name; a comparison's strategy run is named with its comparison (compare-…/probe)."""
        parent = self.path.parent
        if parent.name.startswith(COMPARE_PREFIX) and not is_run_dir(parent):
            return f"{parent.name}/{self.path.name}"
        return self.path.name

    @property
    def resumable(self) -> bool:
        return self.status in ("stopped", "crashed", "failed") and RunDir(self.path).checkpoint.is_file()

    @property
    def has_weights(self) -> bool:
        return RunDir(self.path).has_weights()

    def weights_label(self) -> str:
        """Which weights an export of this run writes, in words."""
        if RunDir(self.path).weights.is_file() and self.status == "finished":
            return f"run {self.name}, epoch {self.epochs_done} of {self.epochs_total or self.epochs_done} (finished)"
        if self.has_weights:
            return f"run {self.name}, last checkpoint after epoch {self.epochs_done} ({self.status})"
        return f"run {self.name}: no weights yet"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["name"] = self.name
        out["resumable"] = self.resumable
        out["weights"] = self.weights_label()
        out.pop("curves")
        return out


COMPARE_PREFIX = "compare-"  # a comparison's folder (workbench compare, the Compare tab): one run per strategy


def is_run_dir(path: Path) -> bool:
    return RunDir(path).is_run()


def runs_folder(project_or_folder: Path) -> list[Path]:
    """Run folders for a project file (``runs/`` beside it), a runs folder, or one run folder."""
    path = Path(project_or_folder).expanduser()
    if path.is_file() and path.suffix == ".toml":
        root = path.parent / "runs"
    elif is_run_dir(path):
        return [path]
    elif path.is_dir():
        root = path / "runs" if (path / "runs").is_dir() and not any(is_run_dir(p) for p in path.iterdir()) else path
    else:
        raise WorkbenchError(f"{path} is neither a project file nor a folder of runs")
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if is_run_dir(p)]
    for folder in root.glob(f"{COMPARE_PREFIX}*"):  # a comparison's strategies are runs of the project too
        if folder.is_dir() and not is_run_dir(folder):
            found.extend(p for p in folder.iterdir() if is_run_dir(p))
    return sorted(found, key=lambda p: (p.parent != root, p.parent.name, p.name))


def list_runs(project_or_folder: Path, plan: Any = None) -> list[RunInfo]:
    return [read_run(p, plan) for p in runs_folder(project_or_folder)]


def read_run(run_dir: Path, plan: Any = None, with_curves: bool = False) -> RunInfo:
    """Summarise one run folder (``plan``: a FinetunePlan to diff its recipe against)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    if not run_dir.is_dir():
        raise WorkbenchError(f"no run folder at {run_dir}")
    recipe = _read_toml(run.project)
    status_file = _read_json(run.status)
    epochs, steps, curves = _read_metrics(run.metrics, with_curves)
    vals = [(float(acc), e.get("epoch", 0)) for e in epochs
            if isinstance(acc := e.get("val_accuracy"), (int, float)) and not isinstance(acc, bool)]
    best = max(vals, key=lambda v: v[0]) if vals else None
    total = recipe.get("train", {}).get("epochs") if isinstance(recipe.get("train"), dict) else None
    state = status_file.get("state") if isinstance(status_file, dict) else None
    if run.is_running():
        status = "running"
    elif state == "running":
        status = "crashed"  # killed: the lock is free but nothing wrote an outcome
    elif state in ("finished", "stopped", "failed"):
        status = state
    elif run.weights.is_file() and total is not None and len(epochs) >= total:
        status = "finished"  # a run from before status.json
    else:
        status = "stopped" if run.checkpoint.is_file() else "crashed"
    spec = _read_json(run.spec)
    arch = spec.get("architecture") if isinstance(spec, dict) else None
    model = recipe.get("model", {}) if isinstance(recipe.get("model"), dict) else {}
    info = RunInfo(
        path=run_dir, status=status, started=_started(run_dir), architecture=str(arch or model.get("name", "?")),
        epochs_done=len(epochs), epochs_total=total, steps=steps,
        best_val_accuracy=best[0] if best else None, best_epoch=best[1] if best else None,
        last_val_accuracy=vals[-1][0] if vals else None,
        message=str(status_file.get("message", "")) if isinstance(status_file, dict) else "",
        curves=curves,
    )
    if plan is not None and recipe:
        info.differences = recipe_differences(recipe, plan)
    return info


def recipe_differences(recipe: dict[str, Any], plan: Any) -> list[str]:
    """What differs between a run's recorded recipe and ``plan``, as short ``section.key: run → plan`` lines."""
    from workbench.project import plan_to_dict

    current = plan_to_dict(plan)
    out: list[str] = []
    for section in ("model", "freeze", "groups", "unfreeze", "train"):
        a, b = recipe.get(section), current.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key in ("label_names", "num_classes", "name") and section == "model":
                    if key != "name" or Path(str(a.get(key))).name == Path(str(b.get(key))).name:
                        continue
                if _norm(a.get(key)) != _norm(b.get(key)):
                    out.append(f"{section}.{key}: {_short(a.get(key))} → {_short(b.get(key))}")
        elif _norm(a) != _norm(b):
            out.append(f"{section}: {_short(a)} → {_short(b)}")
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None}
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "…"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line or a non-record line is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _read_metrics(path: Path, with_curves: bool) -> tuple[list[dict[str, Any]], int, dict[str, list[float]]]:
    epochs: list[dict[str, Any]] = []
    steps = 0
    curves: dict[str, list[float]] = {"step": [], "loss": [], "epoch": [], "val_accuracy": [], "train_accuracy": []}
    for record in read_metrics(path):
        if record.get("type") == "epoch":
            epochs.append(record)
            if with_curves:
                curves["epoch"].append(float(record.get("epoch", 0)) + 1)
                curves["val_accuracy"].append(_num(record.get("val_accuracy")))
                curves["train_accuracy"].append(_num(record.get("train_accuracy")))
        elif record.get("type") == "step":
            steps += 1
            if with_curves:
                curves["step"].append(float(record.get("global_step", steps)))
                curves["loss"].append(_num(record.get("loss")))
    return epochs, steps, curves if with_curves else {}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _started(run_dir: Path) -> str:
    run = RunDir(run_dir)
    for path in (run.project, run.status, run.metrics):
        if path.exists():
            return datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    return ""


def format_table(runs: list[RunInfo]) -> str:
    """The runs as an aligned text table (``workbench runs``)."""
    if not runs:
        return "no runs"
    rows = [("run", "status", "started", "epochs", "best val", "last val", "differs from plan")]
    for r in runs:
        epochs = f"{r.epochs_done}/{r.epochs_total}" if r.epochs_total else str(r.epochs_done)
        best = (f"{r.best_val_accuracy:.1%} (ep {r.best_epoch + 1})"
                if r.best_val_accuracy is not None and r.best_epoch is not None else "—")
        last = f"{r.last_val_accuracy:.1%}" if r.last_val_accuracy is not None else "—"
        diff = "; ".join(r.differences) if r.differences else ("same" if r.differences == [] else "")
        rows.append((r.name, r.status, r.started.replace("T", " "), epochs, best, last, diff))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
