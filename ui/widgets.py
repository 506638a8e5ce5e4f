"""Small reusable widgets."""

from __future__ import annotations

import math
import re

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QLineEdit, QStyledItemDelegate, QWidget

# What a number can look like while it is being typed (validated fully on Enter).
_PARTIAL_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d*)?([eE][+-]?\d*)?\s*$")
_NICE_STEPS = (1.0, 2.0, 5.0)


def exact_text(value: float) -> str:
    """The shortest text that reads back as exactly ``value`` (0.001, 6.56e-05, 1000000.0 → 1e+06)."""
    text = repr(float(value))
    if text.endswith(".0") and abs(value) >= 1e6:
        text = f"{value:g}" if float(f"{value:g}") == value else text
    return text


def parse_rate(text: str, allow_zero: bool, maximum: float | None = None,
               below: float | None = None) -> tuple[float | None, str | None]:
    """``text`` as a learning rate / weight decay / factor, or the reason it is not one.

    ``maximum`` is inclusive, ``below`` exclusive (label smoothing must stay under 1).
    """
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
    if below is not None and value >= below:
        return None, f"{stripped} must be below {exact_text(below)}"
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
                 parent: QWidget | None = None, below: float | None = None) -> None:
        super().__init__(parent)
        self._allow_zero = allow_zero
        self._maximum = maximum
        self._below = below
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
        value, error = parse_rate(text, self._allow_zero, self._maximum, self._below)
        if error is not None:
            self.lineEdit().setText(exact_text(self._value))
            self.rejected.emit(error)
            return False
        self.setValue(value)
        return True

    def validate(self, text: str, pos: int) -> object:
        if _PARTIAL_NUMBER.match(text) or text.strip().lower() in ("n", "na", "nan", "i", "in", "inf"):
            value, error = parse_rate(text, self._allow_zero, self._maximum, self._below)
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
        if self._below is not None and value >= self._below:
            return
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



_SIZE_SEPARATORS = re.compile(r"\s*[x×X*,]\s*|\s+")


def input_size_text(size: tuple[int, ...] | None) -> str:
    return "×".join(str(v) for v in size) if size else ""


def parse_input_size(text: str, channels: int) -> tuple[tuple[int, int, int] | None, str | None]:
    """``C×H×W`` (or ``H×W``, keeping ``channels``) as an input size, or the reason it is not one."""
    from workbench.plan import MAX_CHANNELS, MAX_SIDE

    stripped = text.strip()
    parts = [p for p in _SIZE_SEPARATORS.split(stripped) if p]
    example = f"e.g. {channels}×48×192 (channels × height × width) or 48×192"
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        return None, f"{stripped!r} is not an input size ({example})"
    numbers = [int(p) for p in parts]
    c, h, w = numbers if len(numbers) == 3 else [channels, *numbers]
    if not 1 <= c <= MAX_CHANNELS:
        return None, f"{stripped}: channels must be 1-{MAX_CHANNELS}, not {c}"
    for name, side in (("height", h), ("width", w)):
        if not 1 <= side <= MAX_SIDE:
            return None, f"{stripped}: {name} must be 1-{MAX_SIDE}, not {side}"
    return (c, h, w), None


class InputSizeEdit(QLineEdit):
    """A ``C×H×W`` input size, typed (``3×48×192``, ``3x48x192`` or ``48×192``) and checked on Enter.

    ``sizeEntered`` carries the new size (None for "model default" when ``allow_default`` and the
    text is empty); a bad size emits ``rejected`` with the reason and the previous text comes back.
    """

    sizeEntered = Signal(object)
    rejected = Signal(str)

    def __init__(self, allow_default: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._allow_default = allow_default
        self._size: tuple[int, int, int] | None = None
        self.setPlaceholderText("model default" if allow_default else "C×H×W")
        self.setToolTip("Channels × height × width of one input image, e.g. 3×224×224 or 3×48×192 "
                        "(height × width alone keeps the channels)")
        self.editingFinished.connect(self.commit)

    def size(self) -> tuple[int, int, int] | None:  # type: ignore[override]
        return self._size

    def set_size(self, size: tuple[int, ...] | None) -> None:
        """Show a size (no signal)."""
        self._size = tuple(size) if size else None  # type: ignore[assignment]
        self.setText(input_size_text(self._size))

    def commit(self) -> bool:
        text = self.text().strip()
        if text == input_size_text(self._size):
            return True
        if not text and self._allow_default:
            self._size = None
            self.sizeEntered.emit(None)
            return True
        size, error = parse_input_size(text, self._size[0] if self._size else 3)
        if error is not None:
            self.setText(input_size_text(self._size))
            self.rejected.emit(error)
            return False
        self._size = size
        self.setText(input_size_text(size))
        self.sizeEntered.emit(size)
        return True
