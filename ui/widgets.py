"""Small reusable widgets."""

from __future__ import annotations

import math
import re

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QStyledItemDelegate, QWidget

# What a number can look like while it is being typed (validated fully on Enter).
_PARTIAL_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d*)?([eE][+-]?\d*)?\s*$")
_NICE_STEPS = (1.0, 2.0, 5.0)


def exact_text(value: float) -> str:
    """The shortest text that reads back as exactly ``value`` (0.001, 6.56e-05, 1000000.0 → 1e+06)."""
    text = repr(float(value))
    if text.endswith(".0") and abs(value) >= 1e6:
        text = f"{value:g}" if float(f"{value:g}") == value else text
    return text


def parse_rate(text: str, allow_zero: bool, maximum: float | None = None) -> tuple[float | None, str | None]:
    """``text`` as a learning rate / weight decay / factor, or the reason it is not one."""
    stripped = text.strip()
    try:
        value = float(stripped)
    except ValueError:
        return None, f"{stripped!r} is not a number (examples: 0.001, 3e-4, 1e-5)"
    if math.isnan(value) or math.isinf(value):
        return None, f"{stripped} is not a finite number"
    if value < 0 or (value == 0 and not allow_zero):
        return None, f"{stripped} must be {'at least 0' if allow_zero else 'greater than 0'}"
    if maximum is not None and value > maximum:
        return None, f"{stripped} must be at most {exact_text(maximum)}"
    return value, None


class ScientificSpinBox(QAbstractSpinBox):
    """A number box for learning rates and weight decay.

    It keeps exactly the number typed (no decimals limit, no maximum), shows it in the
    shortest exact form (scientific notation where that is shorter), and never rounds a value
    it was given. Typing a non-number, NaN, inf or a value out of range is refused with a
    message (``rejected``) and the previous value stays. Arrows step along 1-2-5 per decade.
    """

    valueChanged = Signal(float)
    rejected = Signal(str)

    def __init__(self, value: float = 1e-3, allow_zero: bool = False, maximum: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._allow_zero = allow_zero
        self._maximum = maximum
        self._value = float(value)
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToPreviousValue)
        self.lineEdit().setText(exact_text(self._value))
        self.editingFinished.connect(self.commit)

    def value(self) -> float:
        return self._value

    def setValue(self, value: float) -> None:  # noqa: N802
        value = float(value)
        changed = value != self._value
        self._value = value
        self.lineEdit().setText(exact_text(value))
        if changed:
            self.valueChanged.emit(value)

    def commit(self) -> bool:
        """Take the typed text (Enter or focus out). False, with ``rejected`` emitted, when refused."""
        text = self.lineEdit().text()
        if text.strip() == exact_text(self._value):
            return True
        value, error = parse_rate(text, self._allow_zero, self._maximum)
        if error is not None:
            self.lineEdit().setText(exact_text(self._value))
            self.rejected.emit(error)
            return False
        self.setValue(value)
        return True

    def validate(self, text: str, pos: int) -> object:
        if _PARTIAL_NUMBER.match(text) or text.strip().lower() in ("n", "na", "nan", "i", "in", "inf"):
            value, error = parse_rate(text, self._allow_zero, self._maximum)
            state = QValidator.State.Acceptable if error is None else QValidator.State.Intermediate
            return state, text, pos
        return QValidator.State.Invalid, text, pos

    def fixup(self, text: str) -> str:
        return exact_text(self._value)

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802
        flags = QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self._value > 0:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self._value if self._value > 0 else 1e-6
        for _ in range(abs(steps)):
            value = _nice_step(value, up=steps > 0)
        if self._maximum is not None:
            value = min(value, self._maximum)
        self.setValue(value)


def _nice_step(value: float, up: bool) -> float:
    """The next 1-2-5 value above or below ``value``."""
    decade = math.floor(math.log10(value))
    ladder = [m * 10.0 ** d for d in (decade - 1, decade, decade + 1) for m in _NICE_STEPS]
    ladder = [float(f"{v:.12g}") for v in ladder]
    if up:
        return next(v for v in ladder if v > value * (1 + 1e-12))
    return next(v for v in reversed(ladder) if v < value * (1 - 1e-12))


class ScientificDelegate(QStyledItemDelegate):
    """Table cells edited with a ``ScientificSpinBox``: the exact value in, the exact typed value out."""

    rejected = Signal(str)

    def __init__(self, allow_zero_columns: set[int] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._allow_zero_columns = allow_zero_columns or set()

    def createEditor(self, parent: QWidget, option: object,  # noqa: N802
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        editor = ScientificSpinBox(allow_zero=index.column() in self._allow_zero_columns, parent=parent)
        editor.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
        editor.rejected.connect(self.rejected)  # refused on Enter: the message, and the old value stays
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:  # noqa: N802
        value = index.data(0x0002)  # EditRole: the exact stored number
        if isinstance(editor, ScientificSpinBox) and value is not None:
            editor.blockSignals(True)
            editor.setValue(float(value))
            editor.blockSignals(False)

    def setModelData(self, editor: QWidget, model: object,  # noqa: N802
                     index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, ScientificSpinBox)
        text = editor.lineEdit().text()
        if text.strip() == exact_text(editor.value()):
            value: float | None = editor.value()
        else:
            value, error = parse_rate(text, index.column() in self._allow_zero_columns)
            if error is not None:
                self.rejected.emit(error)
                return
        if value != index.data(0x0002):
            model.setData(index, value)  # type: ignore[attr-defined]

