"""An undo history of named steps, Qt-free (the shape of Qt's QUndoStack, kept in the core)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workbench.events import Event


@dataclass(frozen=True)
class UndoStep:
    """One done change: ``undo`` puts back the state before it, ``redo`` the state after it."""

    text: str
    undo: Callable[[], None]
    redo: Callable[[], None]


class UndoHistory:
    """Steps already done, newest last; undone steps stay redoable until a new step is pushed.

    ``changed`` is emitted after every push, undo, redo and clear.
    """

    def __init__(self) -> None:
        self._steps: list[UndoStep] = []
        self._index = 0  # steps[:index] are done, steps[index:] undone
        self.changed = Event("changed")

    def push(self, step: UndoStep) -> None:
        """Record a step that has already been made (its ``redo`` is not called now); drops the redoable ones."""
        del self._steps[self._index:]
        self._steps.append(step)
        self._index = len(self._steps)
        self.changed.emit()

    def undo(self) -> None:
        if self._index == 0:
            return
        self._steps[self._index - 1].undo()
        self._index -= 1
        self.changed.emit()

    def redo(self) -> None:
        if self._index == len(self._steps):
            return
        self._steps[self._index].redo()
        self._index += 1
        self.changed.emit()

    def clear(self) -> None:
        self._steps.clear()
        self._index = 0
        self.changed.emit()

    def count(self) -> int:
        """How many steps are recorded, undone ones included."""
        return len(self._steps)

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._steps)

    @property
    def undo_text(self) -> str:
        """The name of the step ``undo`` would undo; "" when there is none."""
        return self._steps[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._steps[self._index].text if self.can_redo else ""
