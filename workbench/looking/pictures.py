"""Looks drawn as files (PNG, SVG or PDF by the name's suffix) with matplotlib, written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import numpy as np

    from workbench.looking.activations import LayerLook
    from workbench.looking.heatmaps import Heatmap

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def picture_format(path: Path) -> str:
    """The file format ``path``'s suffix names; one clear error for any other."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise WorkbenchError(f"--out {path}: give a file ending in {', '.join(FORMATS)}")
    return fmt


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names."""
    fmt = picture_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (for the window: drawn in a worker thread, shown as a pixmap)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure outside pyplot's global state: safe to draw in a worker thread."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


_figure = figure


def activation_figure(result: "LayerLook", pixels: "np.ndarray") -> Any:
    """The input crop, then each shown channel's map (its index and mean), or the vector as bars."""
    if result.kind == "vector":
        fig = _figure(max(6.0, min(16.0, len(result.values) * 0.18)), 3.2)
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(range(len(result.values)), [v for _, v in result.values], color="#4c72b0")
        shown = "" if len(result.values) == result.width else f" (the {len(result.values)} largest of {result.width})"
        ax.set_title(f"{result.layer} ({result.type_name}) output {tuple(result.shape)}: a vector{shown}", fontsize=9)
        if len(result.values) <= 64:
            ax.set_xticks(range(len(result.values)), [str(i) for i, _ in result.values], fontsize=6, rotation=90)
        ax.set_xlabel("index")
        return fig
    count = len(result.channels) + 1
    cols = min(count, 6)
    rows = math.ceil(count / cols)
    fig = _figure(cols * 1.9, rows * 2.05 + 0.3)
    fig.suptitle(f"{result.layer} ({result.type_name}) output {tuple(result.shape)}: "
                 f"{len(result.channels)} most active of {result.width} channels", fontsize=9)
    ax = fig.add_subplot(rows, cols, 1)
    ax.imshow(pixels)
    ax.set_title("input", fontsize=8)
    ax.axis("off")
    for k, channel in enumerate(result.channels, start=2):
        ax = fig.add_subplot(rows, cols, k)
        ax.imshow(channel.map, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"#{channel.index}  mean {channel.mean:.3g}", fontsize=8)
        ax.axis("off")
    return fig


def heatmap_figure(panels: "list[tuple[str, Heatmap]]", pixels: "np.ndarray") -> Any:
    """The input crop, then one overlay per (title, heatmap): side by side for a before/after comparison."""
    fig = _figure(3.0 * (len(panels) + 1), 3.4)
    ax = fig.add_subplot(1, len(panels) + 1, 1)
    ax.imshow(pixels)
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    for k, (title, heat) in enumerate(panels, start=2):
        ax = fig.add_subplot(1, len(panels) + 1, k)
        ax.imshow(pixels)
        ax.imshow(heat.values, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{title}\n{heat.method} @ {heat.layer}\n{_short(heat.label)} ({heat.score:.1%})", fontsize=8)
        ax.axis("off")
    return fig


def _short(label: str) -> str:
    return label.split(",")[0]


def depth_figure(probe: Any, title: str) -> Any:
    """Validation top-1 of the probe at each depth, with each cut's feature width and kept parameters."""
    fig = _figure(max(5.5, len(probe.results) * 1.1), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(probe.results))
    ax.plot(xs, [r.val_top1 for r in probe.results], marker="o", color="#4c72b0")
    for x, r in zip(xs, probe.results):
        ax.annotate(f"{r.val_top1:.1%}\n{r.width} ch, {r.params_kept / 1e6:.2g}M params", (x, r.val_top1),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.set_xticks(list(xs), [r.label for r in probe.results], fontsize=8, rotation=20)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("val top-1 of a linear probe")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def features_figure(rows: "list[tuple[str, list[Any]]]") -> Any:
    """One row of optimised pictures per (layer, pictures): each channel's index and final activation."""
    cols = max(len(pictures) for _, pictures in rows)
    fig = _figure(cols * 1.55, len(rows) * 1.75 + 0.2)
    for r, (layer, pictures) in enumerate(rows):
        for c, picture in enumerate(pictures):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(picture.pixels)
            ax.set_title(f"{layer} #{picture.channel}" if c == 0 else f"#{picture.channel}", fontsize=7)
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    return fig
