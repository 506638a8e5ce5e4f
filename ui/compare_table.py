"""The Compare tab's table: one row per strategy, its status while it runs, then its accuracy and costs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

COLUMNS = ("Strategy", "Status", "Val top-1 %", "Best %", "Best epoch", "Train top-1 %", "Wall s", "Images/s",
           "Trainable", "Grads + opt. state MB", "Peak mem MB", "Cached")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FAILED_COLOR = QColor("#d62728")


class _SortItem(QTableWidgetItem):
    """Sorts by the number in SORT_ROLE (text columns sort by text)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:  # type: ignore[override]
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if a is None or b is None:
            return self.text() < other.text()
        return a < b


class CompareTable(QTableWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def clear_rows(self) -> None:
        self.setSortingEnabled(False)
        self.setRowCount(0)
        self.setSortingEnabled(True)

    def set_status(self, name: str, text: str, error: str | None = None) -> None:
        """Strategy ``name``'s status cell; with ``error``, in red, the error as its tooltip."""
        row = self._row(name)
        self._set(row, 1, text)
        if error is not None:
            self.item(row, 1).setForeground(FAILED_COLOR)
            self.item(row, 1).setToolTip(error)

    def show_result(self, r: Any) -> None:
        """A finished strategy's row (a workbench.compare StrategyResult)."""
        row = self._row(r.name)
        self.setSortingEnabled(False)
        pct = (lambda v: ("-", None) if v is None else (f"{100 * v:.1f}", 100 * v))
        self._set(row, 1, "done")
        for col, value in ((2, r.val_top1), (3, r.val_top1_best), (5, r.train_top1)):
            self._set(row, col, *pct(value))
        self._set(row, 4, "-" if r.best_epoch is None else str(r.best_epoch + 1),
                  None if r.best_epoch is None else r.best_epoch + 1)
        self._set(row, 6, f"{r.wall_s:.1f}", r.wall_s)
        self._set(row, 7, f"{r.images_per_s:.0f}", r.images_per_s)
        self._set(row, 8, f"{r.trainable_params:,}", r.trainable_params)
        mem = r.grad_bytes + r.optimizer_state_bytes
        self._set(row, 9, f"{mem / 2**20:.1f}", mem)
        self._set(row, 10, f"{r.peak_mem_bytes / 2**20:.0f}", r.peak_mem_bytes)
        self._set(row, 11, "yes" if r.cached else "no")
        self.setSortingEnabled(True)

    def selected_name(self) -> str | None:
        rows = self.selectionModel().selectedRows()
        return self.item(rows[0].row(), 0).text() if rows else None

    def _row(self, name: str) -> int:
        """The strategy's current row (sorting moves rows)."""
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is not None and item.text() == name:
                return row
        self.setSortingEnabled(False)
        row = self.rowCount()
        self.insertRow(row)
        self._set(row, 0, name)
        self.setSortingEnabled(True)
        return self._row(name)

    def _set(self, row: int, col: int, text: str, sort: float | None = None) -> None:
        item = _SortItem(text)
        item.setData(SORT_ROLE, sort)
        if sort is not None:
            item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
        self.setItem(row, col, item)
