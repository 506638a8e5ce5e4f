"""The Compare tab's three charts: val top-1 by epoch, accuracy against time (Pareto front), drift by depth."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QWidget

from workbench_ui.plots import IntegerAxis

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


class CompareCharts(QSplitter):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.curves = pg.PlotWidget(axisItems={"bottom": IntegerAxis("bottom")})  # epochs: no 1.5
        self.curves.getPlotItem().setTitle("val top-1 by epoch", size="10pt")
        self.curves.setLabel("bottom", "epoch")
        self.curves.setLabel("left", "val top-1 %")
        self.curves.showGrid(x=True, y=True, alpha=0.25)
        self.legend = self.curves.addLegend(offset=(-5, 5))
        self.scatter_plot = pg.PlotWidget()
        self.scatter_plot.getPlotItem().setTitle("accuracy vs time (★ Pareto)", size="10pt")
        self.scatter_plot.setToolTip("Best validation top-1 against wall time; ★ marks the Pareto front "
                                     "(no other strategy is both faster and more accurate)")
        self.scatter_plot.setLabel("bottom", "wall s")
        self.scatter_plot.setLabel("left", "best val top-1 %")
        self.scatter_plot.showGrid(x=True, y=True, alpha=0.25)
        self.drift_plot = pg.PlotWidget()
        self.drift_plot.getPlotItem().setTitle("drift by depth (selected strategy)", size="10pt")
        self.drift_plot.setLabel("bottom", "module (input → output)")
        self.drift_plot.setLabel("left", "‖W′−W‖/‖W‖")
        self.curve_items: dict[str, Any] = {}  # one curve per strategy, by name
        self._points: dict[str, list[tuple[int, float]]] = {}
        for w in (self.curves, self.scatter_plot, self.drift_plot):
            self.addWidget(w)

    def clear(self) -> None:
        self._points.clear()
        self.curves.clear()
        self.legend.clear()
        self.curve_items.clear()
        self.scatter_plot.clear()
        self.drift_plot.clear()

    def add_epoch(self, name: str, epoch: int, val_top1_pct: float) -> None:
        """One more point on strategy ``name``'s curve (its own colour, named in the legend)."""
        points = self._points.setdefault(name, [])
        points.append((epoch, val_top1_pct))
        item = self.curve_items.get(name)
        if item is None:
            color = _PALETTE[len(self.curve_items) % len(_PALETTE)]
            item = self.curves.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                    symbolBrush=color, name=name)
            self.curve_items[name] = item
        item.setData([p[0] for p in points], [p[1] for p in points])

    def draw_scatter(self, results: list[Any]) -> None:
        """Each finished strategy at (wall s, best val top-1 %); the Pareto front starred and joined."""
        from workbench.compare import pareto_front

        self.scatter_plot.clear()
        front = pareto_front(results)
        for r in results:
            if r.val_top1_best is None:
                continue
            on = r.name in front
            self.scatter_plot.plot([r.wall_s], [100 * r.val_top1_best], pen=None, symbol="star" if on else "o",
                                   symbolSize=16 if on else 9, symbolBrush="#d62728" if on else "#1f77b4")
            label = pg.TextItem(r.name, anchor=(0, 1), color="#444")
            label.setPos(r.wall_s, 100 * r.val_top1_best)
            self.scatter_plot.addItem(label)
        ordered = sorted((r for r in results if r.name in front), key=lambda r: r.wall_s)
        if len(ordered) > 1:
            self.scatter_plot.plot([r.wall_s for r in ordered], [100 * r.val_top1_best for r in ordered],
                                   pen=pg.mkPen("#d62728", width=1, style=Qt.PenStyle.DashLine))
        shown = [r for r in results if r.val_top1_best is not None]
        if shown:  # explicit range: auto-range can miss points added in the same event-loop turn
            xs, ys = [r.wall_s for r in shown], [100 * r.val_top1_best for r in shown]
            dx, dy = max(max(xs) - min(xs), 1.0) * 0.2, max(max(ys) - min(ys), 2.0) * 0.15
            self.scatter_plot.setXRange(min(xs) - dx, max(xs) + 2 * dx, padding=0)
            self.scatter_plot.setYRange(min(ys) - dy, max(ys) + dy, padding=0)

    def draw_drift(self, name: str, values: list[float]) -> None:
        """Per-module drift from input to output; modules exactly unchanged (frozen) in grey."""
        frozen = [v == 0.0 for v in values]
        self.drift_plot.addItem(pg.BarGraphItem(x=list(range(len(values))), height=values, width=0.8,
                                                brushes=[pg.mkBrush("#9aa7b8" if f else "#1f77b4") for f in frozen]))
        self.drift_plot.getPlotItem().getViewBox().autoRange()
        self.drift_plot.getPlotItem().setTitle(f"drift: {name} ({sum(frozen)}/{len(values)} unchanged)",
                                               size="10pt")
        self.drift_plot.setToolTip(f"‖W′−W‖/‖W‖ per module from input to output for {name}: "
                                   f"{sum(frozen)} of {len(values)} modules are exactly unchanged")
