"""'Cut here and add a new head…': pool/hidden/activation/dropout with a live shape + parameter preview."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from workbench.errors import WorkbenchError
from workbench.plan import ACTIVATIONS, POOLS, HeadSpec
from workbench.schema_limits import field_limits
from workbench.surgery import parse_head, preview
from workbench_ui.number_boxes import set_schema_range


class HeadDialog(QDialog):
    """Edits a HeadSpec cut at ``cut``; the preview is computed on a copy, the model is untouched."""

    def __init__(self, model: Any, cut: str, num_classes: int, input_size: tuple[int, ...],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Cut at {cut} and add a new head")
        self._model, self._cut, self._classes, self._size = model, cut, num_classes, input_size
        self.pool = QComboBox()
        self.pool.addItems(list(POOLS))
        self.hidden = QLineEdit()
        self.hidden.setPlaceholderText("e.g. 128, 64 (empty: one Linear layer)")
        self.activation = QComboBox()
        self.activation.addItems(list(ACTIVATIONS))
        self.dropout = QDoubleSpinBox()
        set_schema_range(self.dropout, field_limits(HeadSpec, "dropout"))
        self.dropout.setSingleStep(0.05)
        self.result_label = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Cut at", QLabel(cut))
        for label, widget in (("Pool", self.pool), ("Hidden sizes", self.hidden), ("Activation", self.activation),
                              ("Dropout", self.dropout), ("Result", self.result_label)):
            form.addRow(label, widget)
        form.addRow(self.buttons)
        self.pool.currentTextChanged.connect(self.refresh)
        self.hidden.textChanged.connect(self.refresh)
        self.activation.currentTextChanged.connect(self.refresh)
        self.dropout.valueChanged.connect(self.refresh)
        self.spec: HeadSpec | None = None
        self.refresh()

    def refresh(self) -> None:
        """Validate the fields and show output shape and parameter count (OK only when valid)."""
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            parts = [p.strip() for p in self.hidden.text().replace(";", ",").split(",") if p.strip()]
            try:
                hidden = [int(p) for p in parts]
            except ValueError:
                raise WorkbenchError(f"hidden sizes must be whole numbers, not {self.hidden.text()!r}") from None
            spec = parse_head({"cut": self._cut, "pool": self.pool.currentText(), "hidden": hidden,
                               "activation": self.activation.currentText(), "dropout": self.dropout.value()})
            info = preview(self._model, spec, self._classes, self._size)
        except WorkbenchError as exc:
            self.spec = None
            self.result_label.setText(f"⚠ {exc}")
            ok.setEnabled(False)
            return
        self.spec = spec
        self.result_label.setText(f"features {'×'.join(map(str, info['feature_shape']))} → output "
                                  f"{info['output_shape'][0]}; new head {info['head_params']:,} parameters, "
                                  f"model {info['total_params']:,}")
        ok.setEnabled(True)
