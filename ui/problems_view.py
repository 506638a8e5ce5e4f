"""The plan's problems before Start (``workbench.preflight``): a list, errors first, each naming its control."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from workbench_ui.session import WorkbenchSession

ERROR_COLOR = QColor("#b00020")
WARNING_COLOR = QColor("#9a6700")
WHERE_ROLE = Qt.ItemDataRole.UserRole + 1


class ProblemsList(QListWidget):
    """One row per problem: ``✖ [code] message`` for errors, ``⚠`` for warnings; activating a row
    emits ``goTo`` with the control it is about ("data", "groups", "train", "layers"). Hidden when there are none."""

    goTo = Signal(str)

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.setMaximumHeight(96)
        self.setToolTip("Problems found in the plan before training; double-click one to go to its setting")
        self.itemActivated.connect(lambda item: self.goTo.emit(str(item.data(WHERE_ROLE) or "")))
        session.problemsChanged.connect(self.refresh)
        session.workspaceChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.clear()
        if self.session.workspace is None:
            self.hide()
            return
        for problem in self.session.problems:
            item = QListWidgetItem(f"{'✖' if problem.is_error else '⚠'} [{problem.code}] {problem.message}")
            item.setForeground(QBrush(ERROR_COLOR if problem.is_error else WARNING_COLOR))
            item.setToolTip(f"{problem.severity}: {problem.message}")
            item.setData(WHERE_ROLE, problem.where)
            self.addItem(item)
        # Shown only while there is something to say: the Training tab's left column is tight at 1440×900.
        self.setVisible(bool(self.session.problems))
