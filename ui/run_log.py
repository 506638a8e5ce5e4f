"""The Training tab's run log: timestamped lines, newest at the bottom; a hint stands out."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListWidget, QWidget

HINT_COLOR = QColor("#9a6700")


class RunLog(QListWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)

    def add(self, text: str) -> None:
        """A line stamped with the time of day; scrolled into view."""
        self.addItem(f"{time.strftime('%H:%M:%S')}  {text}")
        self.scrollToBottom()

    def add_hint(self, text: str) -> None:
        """A line worth a second look, highlighted."""
        self.add(text)
        item = self.item(self.count() - 1)
        if item is not None:
            item.setForeground(HINT_COLOR)
