"""Small reusable widgets."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QWidget


class LrSpinBox(QDoubleSpinBox):
    """A learning-rate box: shows 1e-3 / 0.0003 compactly; arrows step by half a decade."""

    def __init__(self, value: float = 1e-3, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)  # the displayed text is ours; this only bounds the stored value
        self.setRange(1e-9, 10.0)
        self.setValue(value)
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToPreviousValue)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        if not stripped:
            return QValidator.State.Intermediate, text, pos
        try:
            value = float(stripped)
        except ValueError:
            if stripped[-1] in "eE-+." and stripped[0].isdigit():
                return QValidator.State.Intermediate, text, pos
            return QValidator.State.Invalid, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        self.setValue(self.value() * math.sqrt(10.0) ** steps)
