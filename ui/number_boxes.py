"""A whole-number box bound to one schema key: what is typed is stored exactly, or shown as wrong with the reason.

QSpinBox clamps: "999999" in a box with maximum 9999 silently becomes 9999 and "-5" becomes 5.
``SchemaIntBox`` never changes a typed number. Its limits come from the schema
(``workbench.schema_limits``); a value outside them stays in the box, marked wrong, with the
reason beside it (``problem``) and in its tooltip, and nothing is stored (``rejected`` says why).
The arrows step within the limits from the stored value.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QLabel, QWidget

from workbench.schema_limits import Limits

_TYPING = re.compile(r"^\s*[+-]?[\d,_ ]*\s*$")  # a whole number as it is being typed (1,000 and 1_000 too)
WRONG_STYLE = "QAbstractSpinBox { border: 1px solid #b00020; background: #fff0f0; }"


class SchemaIntBox(QAbstractSpinBox):
    valueChanged = Signal(int)  # a typed (or stepped) value within the limits
    rejected = Signal(str)  # a typed value outside the limits: why it was not stored

    def __init__(self, limits: Limits, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.limits = limits
        self._value = int(limits.minimum or 0)
        self.problem = QLabel("")  # the reason a typed value was refused; the form shows it under the box
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.hide()
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToPreviousValue)
        self._base_tip = ""
        self.setToolTip(f"{limits.key}: {limits.describe()}")
        self.lineEdit().setText(str(self._value))
        self.editingFinished.connect(self.commit)
        self.lineEdit().textEdited.connect(lambda *_: self._mark(None))

    def setToolTip(self, text: str) -> None:  # noqa: N802
        self._base_tip = text
        super().setToolTip(text)

    def value(self) -> int:
        return self._value

    def is_wrong(self) -> bool:
        return self.problem.text() != ""

    def setValue(self, value: int) -> None:  # noqa: N802
        """Show ``value`` and clear a wrong mark; ``valueChanged`` when it changed, as QSpinBox does (block the
        box's signals to show the plan's value without editing the plan)."""
        changed = int(value) != self._value
        self._value = int(value)
        self.lineEdit().setText(str(self._value))
        self._mark(None)
        if changed:
            self.valueChanged.emit(self._value)

    def commit(self) -> bool:
        """Take the typed text (Enter or focus out): stored when within the limits, else marked wrong."""
        text = self.lineEdit().text().strip()
        if text == str(self._value):
            self._mark(None)
            return True
        number = _parse(text)
        problem = f"{text!r} is not a whole number" if number is None else self.limits.problem(number)
        if problem is not None:
            self._mark(problem)
            self.rejected.emit(problem)
            return False
        assert number is not None
        self._mark(None)
        self._value = number
        self.lineEdit().setText(str(number))
        self.valueChanged.emit(number)
        return True

    def _mark(self, problem: str | None) -> None:
        self.problem.setText(problem or "")
        self.problem.setVisible(bool(problem))
        self.setStyleSheet(WRONG_STYLE if problem else "")
        super().setToolTip(f"Not stored: {problem}\n{self._base_tip}" if problem else self._base_tip)

    def validate(self, text: str, pos: int) -> object:
        if not _TYPING.match(text):
            return QValidator.State.Invalid, text, pos
        number = _parse(text)
        ok = number is not None and self.limits.problem(number) is None
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def fixup(self, text: str) -> str:
        return text  # never replace what was typed: commit() marks it wrong instead

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        if self.limits.problem(self._value + 1) is None:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.limits.problem(self._value - 1) is None:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self._value + steps
        if self.limits.problem(value) is None:
            self._value = value
            self.lineEdit().setText(str(value))
            self._mark(None)
            self.valueChanged.emit(value)


def _parse(text: str) -> int | None:
    cleaned = text.replace(",", "").replace("_", "").replace(" ", "")
    try:
        return int(cleaned)
    except ValueError:
        return None


def set_schema_range(box: QDoubleSpinBox, limits: Limits) -> None:
    """Give a decimal box a schema key's range: an exclusive bound (dropout < 1) becomes the nearest value the
    box's decimals can show inside it (0.99 with two decimals)."""
    step = 10.0 ** -box.decimals()
    low = -QT_DOUBLE_MAX if limits.minimum is None else limits.minimum + (step if limits.above_minimum else 0.0)
    high = QT_DOUBLE_MAX if limits.maximum is None else limits.maximum - (step if limits.below_maximum else 0.0)
    box.setRange(low, high)
    box.setToolTip(f"{box.toolTip()}\n{limits.key}: {limits.describe()}".strip())


QT_DOUBLE_MAX = 1e300  # "no limit" for a QDoubleSpinBox range
