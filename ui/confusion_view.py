"""A confusion matrix drawn as a heat map, with class names on both axes.

Painted by hand because neither a QTableView nor a pyqtgraph axis turns column labels on their
side or thins labels out when a hundred classes leave a few pixels per cell. Cells are coloured by
their share of the true class (row), blue on the diagonal (correct) and red off it (confused),
so a 3% confusion is visible next to a 95% diagonal; counts are written where they fit.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

CORRECT = QColor("#1f5fbf")
CONFUSED = QColor("#c62828")
MAX_LABEL_PX = 130
MARGIN = 6


def cell_colour(share: float, diagonal: bool) -> QColor:
    """White for nothing, up to full blue (correct) or red (confused) for the whole true class."""
    if share <= 0:
        return QColor("#ffffff")
    # Square root: small confusions (a few %) must still show against a near-white background.
    strength = 0.12 + 0.88 * math.sqrt(min(share, 1.0))
    base = CORRECT if diagonal else CONFUSED
    return QColor(round(255 + (base.red() - 255) * strength), round(255 + (base.green() - 255) * strength),
                  round(255 + (base.blue() - 255) * strength))


class ConfusionMatrixView(QWidget):
    """``matrix[true][predicted]`` as a square grid; click a cell to pick that (true, predicted) pair."""

    cellClicked = Signal(int, int)  # true, predicted

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.classes: list[str] = []
        self.matrix: list[list[int]] = []
        self.selected: tuple[int, int] | None = None
        self._rgb: np.ndarray | None = None
        self.placeholder = "No results yet: train a run, or open one on the Runs tab."
        self.setMouseTracking(True)
        self.setMinimumSize(240, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(460, 420)

    def set_matrix(self, classes: list[str], matrix: list[list[int]]) -> None:
        self.classes, self.matrix, self.selected = list(classes), [list(r) for r in matrix], None
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        if placeholder is not None:
            self.placeholder = placeholder
        self.set_matrix([], [])

    def select(self, cell: tuple[int, int] | None) -> None:
        self.selected = cell
        self.update()

    def share(self, true: int, predicted: int) -> float:
        total = sum(self.matrix[true])
        return self.matrix[true][predicted] / total if total else 0.0

    # -- geometry --------------------------------------------------------------------------
    def _label_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(9.0 if len(self.classes) <= 20 else 8.0)
        return font

    def _geometry(self) -> tuple[QRectF, float, bool, int, float]:
        """(grid rectangle, cell size, predicted labels turned on their side?, label step, label width)."""
        n = max(len(self.classes), 1)
        fm = QFontMetricsF(self._label_font())
        label_w = min(max((fm.horizontalAdvance(c) for c in self.classes), default=0.0), MAX_LABEL_PX,
                      0.3 * min(self.width(), self.height()))
        title_h = fm.height() + 2
        left = MARGIN + title_h + label_w + 6
        width, height = self.width() - left - MARGIN, self.height() - 2 * MARGIN

        def cell_for(bottom: float) -> float:
            return max(min(width / n, (height - bottom) / n), 1.0)

        cell = cell_for(fm.height() + 6 + title_h)
        rotated = label_w > cell - 4
        if rotated:
            cell = cell_for(label_w + 6 + title_h)
        step = max(1, math.ceil((fm.height() + 1) / cell))
        side = cell * n
        x = left + max(0.0, (width - side) / 2)
        return QRectF(x, MARGIN, side, side), cell, rotated, step, label_w

    def cell_rect(self, true: int, predicted: int) -> QRectF:
        grid, cell, *_ = self._geometry()
        return QRectF(grid.left() + predicted * cell, grid.top() + true * cell, cell, cell)

    def cell_at(self, pos: QPointF) -> tuple[int, int] | None:
        if not self.classes:
            return None
        grid, cell, *_ = self._geometry()
        if not grid.contains(pos):
            return None
        n = len(self.classes)
        return (min(int((pos.y() - grid.top()) / cell), n - 1), min(int((pos.x() - grid.left()) / cell), n - 1))

    def describe(self, true: int, predicted: int) -> str:
        count, share = self.matrix[true][predicted], self.share(true, predicted)
        a, b = self.classes[true], self.classes[predicted]
        what = f"{a} predicted correctly" if true == predicted else f"true {a} → predicted {b}"
        return f"{what}: {count:,} image{'s' if count != 1 else ''} ({share:.1%} of {a})"

    # -- events ----------------------------------------------------------------------------
    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        cell = self.cell_at(event.position())
        if cell is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), self.describe(*cell), self)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        cell = self.cell_at(event.position())
        if event.button() == Qt.MouseButton.LeftButton and cell is not None:
            self.select(cell)
            self.cellClicked.emit(*cell)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        # Trap: each void call into PySide6 6.12 on CPython 3.11 drops a reference to None (see
        # ui/__init__.py), so the cells are one image and the lines one call: a paint makes a few dozen
        # calls whatever the number of classes, not one per cell.
        painter = QPainter(self)
        if not self.classes:
            painter.setPen(self.palette().color(self.palette().ColorRole.PlaceholderText))
            painter.drawText(QRectF(self.rect()).adjusted(12, 12, -12, -12),
                             int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.placeholder)
            painter.end()
            return
        grid, cell, rotated, step, label_w = self._geometry()
        n = len(self.classes)
        self._paint_cells(painter, grid, cell, n)
        self._paint_labels(painter, grid, cell, rotated, step, label_w, n)
        painter.end()

    def _heat_image(self) -> QImage:
        """One pixel per cell, coloured by ``cell_colour`` (scaled up without smoothing when drawn)."""
        counts = np.asarray(self.matrix, dtype=np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        strength = np.where(share > 0, 0.12 + 0.88 * np.sqrt(np.clip(share, 0.0, 1.0)), 0.0)
        n = len(self.classes)
        base = np.empty((n, n, 3))
        base[:] = [CONFUSED.red(), CONFUSED.green(), CONFUSED.blue()]
        base[np.arange(n), np.arange(n)] = [CORRECT.red(), CORRECT.green(), CORRECT.blue()]
        rgb = np.rint(255 + (base - 255) * strength[..., None]).astype(np.uint8)
        self._rgb = np.ascontiguousarray(rgb)  # QImage does not own the buffer
        return QImage(self._rgb.data, n, n, 3 * n, QImage.Format.Format_RGB888)

    def _paint_cells(self, painter: QPainter, grid: QRectF, cell: float, n: int) -> None:
        painter.drawImage(grid, self._heat_image())
        if cell >= 6:
            painter.setPen(QPen(QColor("#dddddd"), 1))
            lines = [QLineF(grid.left() + i * cell, grid.top(), grid.left() + i * cell, grid.bottom())
                     for i in range(1, n)]
            lines += [QLineF(grid.left(), grid.top() + i * cell, grid.right(), grid.top() + i * cell)
                      for i in range(1, n)]
            painter.drawLines(lines)
        if cell >= 14:
            count_font = QFont(self.font())
            count_font.setPixelSize(max(7, min(13, int(cell * 0.42))))
            fm = QFontMetricsF(count_font)
            painter.setFont(count_font)
            for dark in (False, True):
                painter.setPen(QColor("#ffffff") if dark else QColor("#222222"))
                for t in range(n):
                    for p in range(n):
                        count = self.matrix[t][p]
                        text = f"{count:,}"
                        if (not count or fm.horizontalAdvance(text) > cell - 3
                                or (cell_colour(self.share(t, p), t == p).lightnessF() < 0.55) != dark):
                            continue
                        rect = QRectF(grid.left() + p * cell, grid.top() + t * cell, cell, cell)
                        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)
        painter.setPen(QPen(QColor("#888888"), 1))
        painter.drawRect(grid)
        if self.selected is not None:
            t, p = self.selected
            painter.setPen(QPen(QColor("#111111"), 2))
            painter.drawRect(QRectF(grid.left() + p * cell, grid.top() + t * cell, cell, cell).adjusted(1, 1, -1, -1))

    def _paint_labels(self, painter: QPainter, grid: QRectF, cell: float, rotated: bool, step: int,
                      label_w: float, n: int) -> None:
        font = self._label_font()
        fm = QFontMetricsF(font)
        painter.setFont(font)
        painter.setPen(self.palette().color(self.palette().ColorRole.WindowText))
        right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        names = [fm.elidedText(c, Qt.TextElideMode.ElideRight, label_w) for c in self.classes]
        shown = range(0, n, step)
        for i in shown:
            y = grid.top() + (i + 0.5) * cell
            painter.drawText(QRectF(grid.left() - label_w - 6, y - fm.height() / 2, label_w, fm.height()),
                             right, names[i])
        if rotated:
            painter.save()
            painter.rotate(-90)  # reads bottom to top, ending at its column: screen (x, y) is (-y, x) here
            for i in shown:
                x = grid.left() + (i + 0.5) * cell
                painter.drawText(QRectF(-(grid.bottom() + 4 + label_w), x - fm.height() / 2, label_w, fm.height()),
                                 right, names[i])
            painter.restore()
        else:
            for i in shown:
                x = grid.left() + (i + 0.5) * cell
                painter.drawText(QRectF(x - cell / 2, grid.bottom() + 3, cell, fm.height()),
                                 int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), names[i])
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        below = grid.bottom() + 6 + (label_w if rotated else fm.height())
        painter.drawText(QRectF(grid.left(), below, grid.width(), fm.height() + 2),
                         int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), "predicted class")
        painter.save()
        painter.rotate(-90)
        painter.drawText(QRectF(-(grid.top() + grid.height()), MARGIN, grid.height(), fm.height() + 2),
                         int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), "true class")
        painter.restore()
        if step > 1:
            painter.setFont(font)
            painter.setPen(self.palette().color(self.palette().ColorRole.PlaceholderText))
            painter.drawText(QRectF(MARGIN, below, grid.left() - MARGIN - 6, fm.height() + 2),
                             int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop), f"1 label in {step}")
