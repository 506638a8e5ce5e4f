"""Live training plots: numpy buffers filled by reports, drawn by a ~50 ms timer (never per point).

Each plot's title sits above it and its legend below it, as Qt labels that wrap when the plot is
narrow: neither can cover a curve or be cut off, however many groups there are.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

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


class HtmlLegend(QLabel):
    """A legend outside the plot area: a coloured line and the name of each curve, wrapping between entries.

    PlotItem calls ``addItem``/``removeItem``/``clear`` on whatever its ``legend`` is, so plotting
    with ``name=`` fills this one exactly as it would pyqtgraph's own LegendItem.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entries: list[tuple[Any, str]] = []
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.hide()

    def addItem(self, item: Any, name: str) -> None:  # noqa: N802 - pyqtgraph's LegendItem API
        self.entries.append((item, str(name)))
        self._render()

    def removeItem(self, item: Any) -> None:  # noqa: N802 - an item, or a name
        self.entries = [(i, n) for i, n in self.entries if i is not item and n != item]
        self._render()

    def clear(self) -> None:
        self.entries = []
        self._render()

    def setOffset(self, offset: Any) -> None:  # noqa: N802 - kept for LegendItem callers; nothing to place
        pass

    def names(self) -> list[str]:
        return [n for _, n in self.entries]

    def _render(self) -> None:
        parts = [f"<span style='color:{_colour(item)}'>━━</span>&nbsp;{html.escape(name).replace(' ', '&nbsp;')}"
                 for item, name in self.entries]
        self.setText("&nbsp;&nbsp; ".join(parts))  # the plain space between entries is where it wraps
        self.setVisible(bool(parts))


def _colour(item: Any) -> str:
    opts = getattr(item, "opts", {})
    if opts.get("pen") is not None:
        return pg.mkPen(opts["pen"]).color().name()
    if opts.get("symbolBrush") is not None:
        return pg.mkBrush(opts["symbolBrush"]).color().name()
    return "#333333"


class IntegerAxis(pg.AxisItem):
    """An axis of whole numbers (epochs): no 1.5 between epoch 1 and 2."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802, N803
        levels = []
        for spacing, values in super().tickValues(minVal, maxVal, size):
            whole = [v for v in values if abs(v - round(v)) < 1e-9]
            if whole:
                levels.append((max(spacing, 1.0), whole))
        return levels

    def tickStrings(self, values: list, scale: float, spacing: float) -> list[str]:  # noqa: N802
        return [str(int(round(v * scale))) for v in values]


class LogAxis(pg.AxisItem):
    """A log axis that labels only 1, 2 and 5 × 10ⁿ: within one decade the 3…9 labels would overlap."""

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        strings = super().logTickStrings(values, scale, spacing)
        keep = []
        for value, text in zip(values, strings):
            mantissa = round(10 ** (value - np.floor(value + 1e-9)), 3)
            keep.append(text if mantissa in (1.0, 2.0, 5.0) else "")
        return keep


class PlotPanel(QWidget):
    """A pyqtgraph plot with its title above and its legend below (outside the data area)."""

    def __init__(self, title: str, x_label: str, y_label: str, log_y: bool = False, integer_x: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        axes: dict[str, pg.AxisItem] = {"bottom": IntegerAxis("bottom")} if integer_x else {}
        if log_y:
            axes["left"] = LogAxis("left")
        self.widget = pg.PlotWidget(axisItems=axes or None)
        self.title = QLabel()
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTitle(title)
        item = self.widget.getPlotItem()
        item.setLabel("bottom", x_label)
        item.setLabel("left", y_label)
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.getAxis("left").enableAutoSIPrefix(False)
        if log_y:
            item.setLogMode(y=True)
        self.legend = HtmlLegend()
        item.legend = self.legend
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(0)
        layout.addWidget(self.title)
        layout.addWidget(self.widget, 1)
        layout.addWidget(self.legend)
        self.setMinimumHeight(170)

    def getPlotItem(self) -> pg.PlotItem:  # noqa: N802 - the PlotWidget spelling callers already use
        return self.widget.getPlotItem()

    def setTitle(self, text: str) -> None:  # noqa: N802
        self.title.setText(f"<b>{html.escape(text)}</b>")

    def reset_view(self, y_range: tuple[float, float] | None = None) -> None:
        """Back to auto-range on both axes (after a zoom or pan), or a fixed y range."""
        item = self.getPlotItem()
        item.enableAutoRange()
        if y_range is not None:
            item.setYRange(*y_range, padding=0.02)


def _plot(title: str, x_label: str, y_label: str, log_y: bool = False, integer_x: bool = False) -> PlotPanel:
    return PlotPanel(title, x_label, y_label, log_y, integer_x)


class TrainingPlots(QWidget):
    """Train loss per step, train/val loss and accuracy per epoch, LR per group."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        self.step_loss = _plot("Loss per step", "step", "loss")
        self.epoch_loss = _plot("Loss per epoch", "epoch", "loss", integer_x=True)
        self.epoch_accuracy = _plot("Accuracy per epoch", "epoch", "accuracy", integer_x=True)
        self.learning_rate = _plot("LR per group", "step", "LR", log_y=True)
        self.epoch_accuracy.getPlotItem().setYRange(0.0, 1.0, padding=0.02)
        self.log_loss = QCheckBox("Log scale for loss")
        self.log_loss.setToolTip("Show both loss plots on a logarithmic axis")
        self.log_loss.toggled.connect(self.set_log_loss)

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
        options = QHBoxLayout()
        options.setContentsMargins(4, 0, 4, 0)
        options.addStretch(1)
        options.addWidget(self.log_loss)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(options)
        layout.addLayout(grid, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def set_log_loss(self, on: bool) -> None:
        for plot in (self.step_loss, self.epoch_loss):
            plot.getPlotItem().setLogMode(y=on)
            plot.reset_view()
        if self.log_loss.isChecked() != on:
            self.log_loss.setChecked(on)

    def _add_curve(self, key: str, widget: PlotPanel, name: str, color: str, symbol: str | None = "o") -> _Curve:
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
            self.learning_rate.legend.removeItem(key[3:])
        for curve in self.curves.values():
            curve.series.clear()
            curve.drawn = -1
        self.redraw()
        for plot in (self.step_loss, self.epoch_loss, self.learning_rate):  # a new run: forget the last zoom
            plot.reset_view()
        self.epoch_accuracy.reset_view(y_range=(0.0, 1.0))

    def redraw(self) -> None:
        for curve in self.curves.values():
            if curve.series.size == curve.drawn:
                continue
            x, y = curve.series.x, curve.series.y
            y = np.where(np.isfinite(y), y, np.nan)  # inf → gap, like NaN
            curve.item.setData(x, y, connect="finite")
            curve.drawn = curve.series.size
