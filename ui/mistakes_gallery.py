"""The Results tab's gallery of misclassified validation images, all or one (true, predicted) pair's."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench_ui.look import muted
from workbench_ui.result_items import RGBA, rgba_pixmap

THUMB = 64
MAX_GALLERY = 240  # the most confident mistakes; the rest are counted, not drawn


def gallery_mistakes(evaluation: Any, cell: tuple[int, int] | None) -> list[Any]:
    """The mistakes the gallery shows, in order: the most confident ones, of the pair ``cell`` when given."""
    if evaluation is None:
        return []
    shown = evaluation.mistakes[:MAX_GALLERY]
    if cell is not None:
        shown = [m for m in shown if (m.true, m.predicted) == cell]
    return shown


class MistakesGallery(QGroupBox):
    """Thumbnails captioned true→predicted; an item's UserRole is its index in ``evaluation.mistakes``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Misclassified validation images (most confident first)", parent)
        self.view = QListWidget()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(THUMB, THUMB))
        self.view.setGridSize(QSize(THUMB + 22, THUMB + 26))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setWordWrap(False)
        self.label = QLabel("")
        muted(self.label)
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.hide()
        head = QHBoxLayout()
        head.addWidget(self.label, 1)
        head.addWidget(self.show_all_button)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.view, 1)

    def clear(self) -> None:
        self.view.clear()
        self.label.setText("")

    def fill(self, ev: Any, thumbs: list[RGBA | None], cell: tuple[int, int] | None) -> None:
        """Show ``ev``'s mistakes (of the pair ``cell``, or all), with the thumbnails made for the first ones."""
        self.view.clear()
        if ev is None:
            return
        index = {id(m): i for i, m in enumerate(ev.mistakes[:MAX_GALLERY])}
        shown = gallery_mistakes(ev, cell)
        for mistake in shown:
            i = index[id(mistake)]
            thumb = thumbs[i] if i < len(thumbs) else None
            icon = QIcon(rgba_pixmap(thumb)) if thumb is not None else QIcon()
            item = QListWidgetItem(icon, f"{ev.classes[mistake.true]}→{ev.classes[mistake.predicted]}")
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setToolTip(f"{mistake.name}\ntrue {ev.classes[mistake.true]}, predicted "
                            f"{ev.classes[mistake.predicted]} ({mistake.confidence:.1%})")
            self.view.addItem(item)
        total = len(ev.mistakes)
        if cell is not None:
            t, p = cell
            count = ev.matrix[t][p]
            more = f" (the first {len(shown)} shown)" if count > len(shown) else ""
            self.label.setText(f"true {ev.classes[t]} → predicted {ev.classes[p]}: "
                               f"{count:,} image{'s' if count != 1 else ''}{more}")
        elif total == 0:
            self.label.setText("No mistakes: every validation image is classified correctly.")
        else:
            more = f"; the {MAX_GALLERY} most confident shown" if total > MAX_GALLERY else ""
            self.label.setText(f"{total:,} of {ev.total:,} validation images misclassified{more}")
        self.show_all_button.setVisible(cell is not None)
