"""The core's UndoHistory seen from Qt: signals when undo/redo become (un)available, and the Edit menu's actions."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction

from workbench.undo_history import UndoHistory


class QtUndoHistory(QObject):
    """QUndoStack's read side over ``workbench.undo_history.UndoHistory``: ``canUndoChanged``,
    ``undoTextChanged`` and the like, emitted only when the value really changed."""

    canUndoChanged = Signal(bool)
    canRedoChanged = Signal(bool)
    undoTextChanged = Signal(str)
    redoTextChanged = Signal(str)

    def __init__(self, history: UndoHistory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self._shown = self._state()
        history.changed.connect(self._history_changed)

    def _state(self) -> tuple[bool, bool, str, str]:
        h = self.history
        return h.can_undo, h.can_redo, h.undo_text, h.redo_text

    def _history_changed(self) -> None:
        state, (can_undo, can_redo, undo_text, redo_text) = self._state(), self._shown
        self._shown = state
        if state[0] != can_undo:
            self.canUndoChanged.emit(state[0])
        if state[1] != can_redo:
            self.canRedoChanged.emit(state[1])
        if state[2] != undo_text:
            self.undoTextChanged.emit(state[2])
        if state[3] != redo_text:
            self.redoTextChanged.emit(state[3])

    def undo(self) -> None:
        self.history.undo()

    def redo(self) -> None:
        self.history.redo()

    def count(self) -> int:
        return self.history.count()

    def canUndo(self) -> bool:  # noqa: N802 (QUndoStack's name)
        return self.history.can_undo

    def canRedo(self) -> bool:  # noqa: N802
        return self.history.can_redo

    def undoText(self) -> str:  # noqa: N802
        return self.history.undo_text

    def redoText(self) -> str:  # noqa: N802
        return self.history.redo_text


class UndoRedoActions(QObject):
    """The Edit menu's "&Undo <step>" and "&Redo <step>", enabled while there is a step to take and
    ``locked()`` is False; call ``update`` when what ``locked`` answers changes."""

    def __init__(self, history: QtUndoHistory, locked: Callable[[], bool], parent: QObject) -> None:
        super().__init__(parent)
        self.history, self.locked = history, locked
        self.undo_action, self.redo_action = QAction("&Undo", parent), QAction("&Redo", parent)
        self.undo_action.triggered.connect(lambda *_: history.undo())
        self.redo_action.triggered.connect(lambda *_: history.redo())
        # Bound methods, not lambdas: Qt disconnects them when the window goes away.
        for signal in (history.canUndoChanged, history.canRedoChanged, history.undoTextChanged,
                       history.redoTextChanged):
            signal.connect(self.update)
        self.update()

    def update(self, *_: object) -> None:
        h, locked = self.history, self.locked()
        self.undo_action.setText(_prefixed("&Undo", h.undoText()))
        self.redo_action.setText(_prefixed("&Redo", h.redoText()))
        self.undo_action.setEnabled(not locked and h.canUndo())
        self.redo_action.setEnabled(not locked and h.canRedo())


def _prefixed(prefix: str, text: str) -> str:
    return f"{prefix} {text}" if text else prefix
