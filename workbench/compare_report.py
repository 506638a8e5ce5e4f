"""One strategy's result, and a comparison's results as a table (text, Markdown), an accuracy-against-time chart and JSON files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from workbench.atomic import atomic_path, atomic_write_text


@dataclass
class StrategyResult:
    name: str
    trainable_params: int
    total_params: int
    val_top1: float | None
    val_top1_best: float | None
    best_epoch: int | None
    train_top1: float | None
    wall_s: float
    images_per_s: float
    optimizer_state_bytes: int
    grad_bytes: int
    peak_mem_bytes: int
    cached: bool
    run_dir: str
    val_top5: float | None = None
    val_top5_best: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)  # per epoch: train/val loss and accuracy
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The documented JSON shape of one strategy."""
        keys = ("name", "trainable_params", "total_params", "val_top1", "val_top1_best", "best_epoch", "train_top1",
                "wall_s", "images_per_s", "optimizer_state_bytes", "grad_bytes", "peak_mem_bytes", "cached", "run_dir")
        out = {k: getattr(self, k) for k in keys}
        if self.val_top5 is not None:
            out["val_top5"], out["val_top5_best"] = self.val_top5, self.val_top5_best
        return out


class Compared(Protocol):
    """What the writers need of a comparison (``workbench.compare.Comparison``)."""

    out_dir: Path
    results: list[StrategyResult]

    def to_dict(self) -> dict[str, Any]: ...


def pareto_front(results: list[StrategyResult]) -> set[str]:
    """Strategies no other beats on both accuracy (higher) and wall time (lower)."""
    scored = [r for r in results if r.val_top1_best is not None]
    front = set()
    for r in scored:
        if not any((o.val_top1_best >= r.val_top1_best and o.wall_s <= r.wall_s)  # type: ignore[operator]
                   and (o.val_top1_best > r.val_top1_best or o.wall_s < r.wall_s) for o in scored):  # type: ignore[operator]
            front.add(r.name)
    return front


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def table_rows(results: list[StrategyResult]) -> list[list[str]]:
    from workbench.cost import human_bytes

    front = pareto_front(results)
    rows = [["strategy", "val top-1", "best (epoch)", "train top-1", "wall s", "img/s", "trainable",
             "grads+opt state", "peak mem", "cached", "pareto"]]
    for r in results:
        rows.append([r.name, _pct(r.val_top1), f"{_pct(r.val_top1_best)} ({r.best_epoch + 1 if r.best_epoch is not None else '-'})",
                     _pct(r.train_top1), f"{r.wall_s:.1f}", f"{r.images_per_s:.0f}",
                     f"{r.trainable_params:,} / {r.total_params:,}", human_bytes(r.grad_bytes + r.optimizer_state_bytes),
                     human_bytes(r.peak_mem_bytes), "yes" if r.cached else "no", "★" if r.name in front else ""])
    return rows


def text_table(results: list[StrategyResult]) -> str:
    rows = table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def markdown_table(results: list[StrategyResult]) -> str:
    rows = table_rows(results)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def write_chart(results: list[StrategyResult], path: Path) -> None:
    """Accuracy (best val top-1) against wall time, the Pareto front joined and marked. Atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in results if r.val_top1_best is not None]
    best = {r.name: float(r.val_top1_best or 0.0) for r in scored}
    front = sorted((r for r in scored if r.name in pareto_front(scored)), key=lambda r: r.wall_s)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in scored:
        on = r.name in {f.name for f in front}
        ax.scatter(r.wall_s, 100 * best[r.name], s=60 if on else 35, color="C3" if on else "C0",
                   marker="*" if on else "o", zorder=3)
        ax.annotate(r.name, (r.wall_s, 100 * best[r.name]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if front:
        ax.step([r.wall_s for r in front], [100 * best[r.name] for r in front], where="post",
                color="C3", alpha=0.6, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("best val top-1 (%)")
    ax.set_title("Strategies: accuracy vs wall time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_outputs(comparison: Compared, json_path: Path | None) -> list[Path]:
    """compare.json in the output folder (and at ``json_path``), with a Markdown table and PNG beside each JSON."""
    data = json.dumps(comparison.to_dict(), indent=2)
    written = []
    targets = [comparison.out_dir / "compare.json"] + ([Path(json_path)] if json_path else [])
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, data)
        atomic_write_text(target.with_suffix(".md"), markdown_table(comparison.results))
        written += [target, target.with_suffix(".md")]
        if comparison.results:
            write_chart(comparison.results, target.with_suffix(".png"))
            written.append(target.with_suffix(".png"))
    return written
