"""The model graph in the window: one box per node (from workbench.looking.model_graph), coloured by state.

Clicking a box emits ``nodeClicked(path)``; ``select(path)`` highlights the box of a tree selection.
A node's context menu freezes or unfreezes it (``freezeRequested(path, frozen)``). ``set_overlay`` colours
the boxes by a run's drift (white: unchanged, through orange to red: the most changed block).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QWheelEvent
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem, QGraphicsView, QMenu

X_STEP, Y_STEP, BOX_W, BOX_H = 240.0, 64.0, 215.0, 40.0


class GraphView(QGraphicsView):
    nodeClicked = Signal(str)
    freezeRequested = Signal(str, bool)

    def __init__(self) -> None:
        super().__init__()
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.BoundingRectViewportUpdate)
        self.boxes: dict[str, QGraphicsRectItem] = {}
        self._paths: dict[QGraphicsRectItem, str] = {}
        self._selected: str | None = None
        self._fills: dict[str, QBrush] = {}  # each box's state colour, for when the overlay goes
        self._overlay_texts: list[QGraphicsSimpleTextItem] = []

    def show_graph(self, graph: Any) -> None:
        """Draw ``graph`` (a laid-out ModelGraph)."""
        from workbench.looking.model_graph import STATE_COLOURS

        scene = self.scene()
        scene.clear()
        self.boxes.clear()
        self._paths.clear()
        self._fills.clear()
        self._overlay_texts.clear()
        pos = {k: QPointF(x * X_STEP, y * Y_STEP) for k, (x, y) in graph.positions.items()}
        for e in graph.edges:
            a, b = pos[e.source], pos[e.target]
            path = QPainterPath(QPointF(a.x(), a.y() + BOX_H / 2))
            end = QPointF(b.x(), b.y() - BOX_H / 2)
            if e.skip:
                bend = max(a.x(), b.x()) + BOX_W * 0.75
                path.cubicTo(QPointF(bend, a.y()), QPointF(bend, b.y()), end)
            else:
                path.lineTo(end)
            pen = QPen(QColor("#c0392b") if e.skip else QColor("#777777"), 1.2)
            if e.skip:
                pen.setStyle(Qt.PenStyle.DashLine)
            scene.addPath(path, pen)
        for n in graph.nodes:
            p = pos[n.id]
            box = scene.addRect(p.x() - BOX_W / 2, p.y() - BOX_H / 2, BOX_W, BOX_H,
                                QPen(QColor("#c0392b") if n.merge else QColor("#666666")),
                                QBrush(QColor(STATE_COLOURS.get(n.state, "#eeeeee"))))
            shape = "×".join(map(str, n.output_shape[1:])) if n.output_shape else "?"
            skips = f" +{n.skips} skip" if n.skips else ""
            text = scene.addText(f"{n.id}\n{n.type_name}{skips}  {shape}")
            font = text.font()
            font.setPointSizeF(7.5)
            text.setFont(font)
            text.setParentItem(box)
            r = text.boundingRect()
            text.setPos(p.x() - r.width() / 2, p.y() - r.height() / 2)
            params = f"{n.params:,} parameters, {n.state}" if n.params else "no parameters"
            box.setToolTip(f"{n.id} ({n.type_name})\noutput {n.output_shape}\n{params}")
            if n.path is not None:
                self.boxes[n.path] = box
                self._paths[box] = n.path
                self._fills[n.path] = box.brush()
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-20, -20, 20, 20))
        self._selected = None

    def set_overlay(self, values: dict[str, float | None] | None) -> None:
        """Colour each box by its value (a run's drift ‖W′−W‖/‖W‖ per module), or back to its state with None."""
        scene = self.scene()
        for item in self._overlay_texts:
            scene.removeItem(item)
        self._overlay_texts.clear()
        for path, box in self.boxes.items():
            box.setBrush(self._fills[path])
        if not values:
            return
        top = max((v for v in values.values() if v), default=0.0)
        for path, box in self.boxes.items():
            value = values.get(path)
            if value is None:
                continue
            share = value / top if top else 0.0
            box.setBrush(QBrush(drift_colour(share)))
            text = QGraphicsSimpleTextItem("unchanged" if value == 0 else f"drift {value:.3g}", box)
            font = text.font()
            font.setPointSizeF(6.5)
            text.setFont(font)
            r = box.rect()
            text.setPos(r.right() - text.boundingRect().width() - 3, r.bottom() - text.boundingRect().height() - 1)
            self._overlay_texts.append(text)

    def select(self, path: str | None) -> None:
        """Outline ``path``'s box (or its enclosing block's) and scroll to it."""
        if self._selected in self.boxes:
            self.boxes[self._selected].setPen(QPen(QColor("#666666")))
        while path and path not in self.boxes:
            path = path.rpartition(".")[0]
        self._selected = path or None
        if path:
            box = self.boxes[path]
            box.setPen(QPen(QColor("#1f6feb"), 3))
            self.ensureVisible(box)

    def _box_at(self, event: Any) -> str | None:
        item = self.itemAt(event.position().toPoint())
        while item is not None and not isinstance(item, QGraphicsRectItem):
            item = item.parentItem()
        return self._paths.get(item) if item is not None else None  # type: ignore[arg-type]

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802
        path = self._box_at(event)
        if path is not None and event.button() == Qt.MouseButton.LeftButton:
            self.select(path)
            self.nodeClicked.emit(path)
        super().mousePressEvent(event)

    def contextMenuEvent(self, event: Any) -> None:  # noqa: N802
        item = self.itemAt(event.pos())
        while item is not None and not isinstance(item, QGraphicsRectItem):
            item = item.parentItem()
        path = self._paths.get(item) if item is not None else None  # type: ignore[arg-type]
        if path is None:
            return
        menu = QMenu(self)
        menu.addAction(f"Freeze {path}", lambda: self.freezeRequested.emit(path, True))
        menu.addAction(f"Unfreeze {path}", lambda: self.freezeRequested.emit(path, False))
        menu.exec(event.globalPos())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        factor = 1.15 if event.angleDelta().y() > 0 else 1 / 1.15
        self.scale(factor, factor)


def drift_colour(share: float) -> QColor:
    """White for no change, through orange to red for the most changed (``share`` = value / largest)."""
    share = min(max(share, 0.0), 1.0)
    if share <= 0.5:
        t = share / 0.5
        return QColor(255, int(255 - 90 * t), int(255 - 200 * t))
    t = (share - 0.5) / 0.5
    return QColor(int(255 - 40 * t), int(165 - 125 * t), int(55 - 15 * t))
