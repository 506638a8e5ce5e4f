"""Message dialogs. Everything goes through QMessageBox's static functions (tests replace them)."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QMessageBox, QWidget


def show_error(parent: QWidget | None, title: str, message: str, detail: str = "") -> None:
    """A user-facing error. Unexpected errors also print their traceback to stderr."""
    if detail:
        print(detail, file=sys.stderr)
        message = f"{message}\n\n(This looks like a bug; the traceback was printed to the terminal.)"
    QMessageBox.critical(parent, title, message)


def ask_yes_no(parent: QWidget | None, title: str, question: str) -> bool:
    answer = QMessageBox.question(parent, title, question,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def ask_save_discard_cancel(parent: QWidget | None, title: str, question: str) -> QMessageBox.StandardButton:
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)
    return QMessageBox.warning(parent, title, question, buttons)
