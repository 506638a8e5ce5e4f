"""The Results tab's two tables: accuracy per class, and the most-confused (true → predicted) pairs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

from workbench_ui.result_items import SortItem

MAX_PAIRS = 20


def fill_per_class(table: QTableWidget, evaluation: Any) -> None:
    """Class, "correct of images", accuracy (red under 50 %, amber under 100 %); sorted by class index."""
    rows = evaluation.per_class()
    table.setSortingEnabled(False)
    table.setRowCount(len(rows))
    for row, c in enumerate(rows):
        name = SortItem(c.name, float(c.index))
        name.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        acc = c.accuracy
        acc_item = SortItem(f"{acc:.1%}" if acc is not None else "—", acc if acc is not None else -1.0)
        if acc is not None and acc < 1.0:
            acc_item.setForeground(QColor("#b00020") if acc < 0.5 else QColor("#8a5a00"))
        for col, item in enumerate((name, SortItem(f"{c.correct:,} of {c.images:,}", c.correct), acc_item)):
            table.setItem(row, col, item)
    table.setSortingEnabled(True)
    table.sortItems(0, Qt.SortOrder.AscendingOrder)


def fill_confused_pairs(table: QTableWidget, evaluation: Any) -> None:
    """The most frequent mistakes; a row's first cell holds its (true, predicted) pair in UserRole."""
    ev = evaluation
    pairs = ev.confused_pairs(MAX_PAIRS)
    table.blockSignals(True)
    table.setRowCount(len(pairs))
    for row, pair in enumerate(pairs):
        text = QTableWidgetItem(f"{ev.classes[pair.true]} → {ev.classes[pair.predicted]}")
        text.setData(Qt.ItemDataRole.UserRole, (pair.true, pair.predicted))
        for col, item in enumerate((text, SortItem(f"{pair.count:,}", pair.count),
                                    SortItem(f"{pair.share:.1%}", pair.share))):
            table.setItem(row, col, item)
    table.blockSignals(False)
