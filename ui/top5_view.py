"""The Results tab's Top-5 box: one image's preview, a caption and its five most likely labels."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QGroupBox, QHBoxLayout, QLabel, QTableWidgetItem, QVBoxLayout, QWidget

from workbench_ui.result_items import SortItem, escape_html, results_table

PREVIEW = 112


class Top5View(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Top-5", parent)
        self.shown: Any = None  # the Mistake or Prediction shown
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW, PREVIEW)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("QLabel { background: palette(base); border: 1px solid palette(mid); }")
        self.caption = QLabel("Click a misclassified image, or try one of your own "
                              "(“Try an image…” or drop a file here).")
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.table = results_table(["Label", "Probability"])
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setMinimumHeight(5 * 20 + 26)
        text_column = QVBoxLayout()
        text_column.addWidget(self.caption)
        text_column.addWidget(self.table, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(text_column, 1)

    def show_top(self, shown: Any, pixmap: QPixmap | None, caption: str, top: list[Any], truth: str | None) -> None:
        """Show ``top`` (label, prob per row) for ``shown``; the row of the true class ``truth`` is green."""
        self.shown = shown
        if pixmap is None:
            self.preview.clear()
            self.preview.setText("(no preview)")
        else:
            self.preview.setPixmap(pixmap)
        self.caption.setText(caption)
        self.table.setRowCount(len(top))
        for row, t in enumerate(top):
            label = QTableWidgetItem(f"{row + 1}. {t.label}")
            prob = SortItem(f"{t.prob:.1%}", t.prob)
            if truth is not None and t.label == truth:
                for item in (label, prob):
                    item.setForeground(QColor("#1b7f3b"))
                label.setToolTip("the true class")
            self.table.setItem(row, 0, label)
            self.table.setItem(row, 1, prob)

    def show_refusal(self, name: str, message: str) -> None:
        """An image that could not be classified: why, and nothing else."""
        self.shown = None
        self.preview.clear()
        self.table.setRowCount(0)
        self.caption.setText(f"<b style='color:#b00020'>Cannot classify {escape_html(name)}:</b> "
                             f"{escape_html(message)}")

    def rows(self) -> list[tuple[str, str]]:
        """The table as the user reads it: (label, probability) per row."""
        rows = []
        for r in range(self.table.rowCount()):
            label, prob = self.table.item(r, 0), self.table.item(r, 1)
            rows.append((label.text() if label else "", prob.text() if prob else ""))
        return rows
