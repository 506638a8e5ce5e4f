"""Live training plots: numpy buffers filled by reports, drawn by a ~50 ms timer (never per point)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 50
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


class GrowingSeries:
    """x/y in numpy arrays that double in size as they fill (amortised O(1) appends)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def append(self, x: float, y: float | None) -> None:
        if self.size == len(self._x):
            self._x = np.resize(self._x, len(self._x) * 2)
            self._y = np.resize(self._y, len(self._y) * 2)
        self._x[self.size] = x
        self._y[self.size] = np.nan if y is None else y
        self.size += 1

    def extend(self, xs: list[float], ys: list[float | None]) -> None:
        for x, y in zip(xs, ys):
            self.append(x, y)

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.size]

    def clear(self) -> None:
        self.size = 0


class _Curve:
    def __init__(self, item: pg.PlotDataItem) -> None:
        self.item = item
        self.series = GrowingSeries()
        self.drawn = 0


def _plot(title: str, x_label: str, y_label: str, log_y: bool = False) -> pg.PlotWidget:
    widget = pg.PlotWidget()
    item = widget.getPlotItem()
    item.setTitle(title, size="10pt")
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    item.showGrid(x=True, y=True, alpha=0.25)
    item.setClipToView(True)
    item.setDownsampling(auto=True, mode="peak")
    legend = item.addLegend(offset=(-10, 10), labelTextSize="8pt", colCount=2 if log_y else 1)
    legend.setBrush(pg.mkBrush(255, 255, 255, 190))
    item.getAxis("left").enableAutoSIPrefix(False)
    if log_y:
        item.setLogMode(y=True)
    widget.setMinimumHeight(150)
    return widget


class TrainingPlots(QWidget):
    """Train loss per step, train/val loss and accuracy per epoch, LR per group."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        self.step_loss = _plot("Loss per step", "step", "loss")
        self.epoch_loss = _plot("Loss per epoch", "epoch", "loss")
        self.epoch_accuracy = _plot("Accuracy per epoch", "epoch", "accuracy")
        self.learning_rate = _plot("LR per group", "step", "LR", log_y=True)
        self.epoch_accuracy.getPlotItem().setYRange(0.0, 1.0, padding=0.02)

        self.curves: dict[str, _Curve] = {}
        self._add_curve("step_loss", self.step_loss, "train", _PALETTE[0], symbol=None)
        self._add_curve("train_loss", self.epoch_loss, "train", _PALETTE[0])
        self._add_curve("val_loss", self.epoch_loss, "val", _PALETTE[1])
        self._add_curve("train_accuracy", self.epoch_accuracy, "train", _PALETTE[0])
        self._add_curve("val_accuracy", self.epoch_accuracy, "val", _PALETTE[1])

        grid = pg.QtWidgets.QGridLayout()
        grid.addWidget(self.step_loss, 0, 0)
        grid.addWidget(self.learning_rate, 0, 1)
        grid.addWidget(self.epoch_loss, 1, 0)
        grid.addWidget(self.epoch_accuracy, 1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)

        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def _add_curve(self, key: str, widget: pg.PlotWidget, name: str, color: str, symbol: str | None = "o") -> _Curve:
        pen = pg.mkPen(color, width=1.5)
        kwargs = {"symbol": symbol, "symbolSize": 6, "symbolBrush": color, "symbolPen": None} if symbol else {}
        # connect="finite": a NaN loss leaves a gap instead of breaking the whole curve.
        item = widget.getPlotItem().plot([], [], pen=pen, name=name, connect="finite", **kwargs)
        curve = _Curve(item)
        self.curves[key] = curve
        return curve

    def add_steps(self, steps: list[int], losses: list[float], lrs: list[dict[str, float]]) -> None:
        self.curves["step_loss"].series.extend(steps, losses)
        for step, by_group in zip(steps, lrs):
            for group, lr in by_group.items():
                key = f"lr:{group}"
                curve = self.curves.get(key)
                if curve is None:
                    color = _PALETTE[sum(k.startswith("lr:") for k in self.curves) % len(_PALETTE)]
                    curve = self._add_curve(key, self.learning_rate, group, color, symbol=None)
                curve.series.append(step, lr if lr > 0 else np.nan)

    def add_epoch(self, epoch: int, train_loss: float, val_loss: float | None,
                  train_accuracy: float, val_accuracy: float | None) -> None:
        x = epoch + 1
        self.curves["train_loss"].series.append(x, train_loss)
        self.curves["val_loss"].series.append(x, val_loss)
        self.curves["train_accuracy"].series.append(x, train_accuracy)
        self.curves["val_accuracy"].series.append(x, val_accuracy)

    def point_count(self, key: str) -> int:
        """Points drawn so far for a curve (what the user sees, not what is buffered)."""
        return self.curves[key].drawn

    def clear(self) -> None:
        for key in [k for k in self.curves if k.startswith("lr:")]:
            self.learning_rate.getPlotItem().removeItem(self.curves.pop(key).item)
            legend = self.learning_rate.getPlotItem().legend
            if legend is not None:
                legend.removeItem(key[3:])
        for curve in self.curves.values():
            curve.series.clear()
            curve.drawn = -1
        self.redraw()

    def redraw(self) -> None:
        for curve in self.curves.values():
            if curve.series.size == curve.drawn:
                continue
            x, y = curve.series.x, curve.series.y
            y = np.where(np.isfinite(y), y, np.nan)  # inf → gap, like NaN
            curve.item.setData(x, y, connect="finite")
            curve.drawn = curve.series.size
