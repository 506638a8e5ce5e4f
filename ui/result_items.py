"""Small pieces the Results tab's views share: sortable number cells, read-only tables, thumbnails, escaping."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

RGBA = tuple[int, int, bytes]  # width, height, RGBA bytes (made off the GUI thread)


def rgba_pixmap(rgba: RGBA) -> QPixmap:
    width, height, data = rgba
    return QPixmap.fromImage(QImage(data, width, height, QImage.Format.Format_RGBA8888).copy())


class SortItem(QTableWidgetItem):
    """A cell shown as text but sorted by a number (UserRole)."""

    def __init__(self, text: str, key: float) -> None:
        super().__init__(text)
        self.setData(Qt.ItemDataRole.UserRole, key)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return float(self.data(Qt.ItemDataRole.UserRole)) < float(other.data(Qt.ItemDataRole.UserRole))


def results_table(headers: list[str]) -> QTableWidget:
    """A read-only table selecting whole rows, its first column stretched."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(22)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return table


def escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
