"""The window's few looks (muted hints, warnings, bold labels, the summary bar), set per widget.

Trap: an application-wide style sheet, however small, makes Qt paint *every* widget through its
style-sheet engine; a fully expanded layer tree then repaints ~30% slower (measured on
efficientnet_b7's 1,105 rows). So these are palettes and fonts on the widgets that need them.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QWidget

WARNING_COLOR = QColor("#9a6700")


def _text_color(widget: QWidget, color: QColor) -> None:
    palette = widget.palette()
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text):
        palette.setColor(role, color)
    widget.setPalette(palette)


def _weight(widget: QWidget, weight: QFont.Weight) -> None:
    font = widget.font()
    font.setWeight(weight)
    widget.setFont(font)


def muted(label: QLabel) -> None:
    """A hint in the palette's mid tone."""
    label.setObjectName("muted")
    _text_color(label, label.palette().color(QPalette.ColorRole.Mid))


def warning_text(label: QLabel) -> None:
    label.setObjectName("warnings")
    _text_color(label, WARNING_COLOR)


def emphasised(label: QLabel) -> None:
    _weight(label, QFont.Weight.DemiBold)


def primary(button: QPushButton) -> None:
    """The one button a panel is about (Start training)."""
    button.setObjectName("primary")
    _weight(button, QFont.Weight.DemiBold)
    button.setMinimumHeight(max(button.sizeHint().height(), 30))


def summary_frame(frame: QFrame) -> None:
    """The summary bar's background: the palette's alternate base."""
    frame.setObjectName("summaryBar")
    frame.setAutoFillBackground(True)
    palette = frame.palette()
    palette.setColor(QPalette.ColorRole.Window, palette.color(QPalette.ColorRole.AlternateBase))
    frame.setPalette(palette)
