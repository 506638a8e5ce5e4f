"""The "Adapt with LoRA…" dialog: rank and alpha for the module right-clicked in the tree."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from workbench.plan import MAX_RANK


class LoraDialog(QDialog):
    """Rank (1 to the layer's limit) and alpha (scale = alpha / rank) of a LoRA adapter."""

    def __init__(self, path: str, rank_limit: int, rank: int = 8, alpha: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Adapt with LoRA")
        self.rank = QSpinBox()
        self.rank.setRange(1, max(1, min(rank_limit, MAX_RANK)))
        self.rank.setValue(min(rank, self.rank.maximum()))
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.01, 1e6)
        self.alpha.setDecimals(2)
        self.alpha.setValue(float(alpha if alpha is not None else self.rank.value()))
        note = QLabel(f"LoRA (peft) on {path}: its own weight is frozen and stays exactly as it is; a rank-r "
                      "update B·A, scaled by alpha / rank, trains instead. Exports merge it into the weight.")
        note.setWordWrap(True)
        self.buttons = buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(note)
        form.addRow(f"rank (at most {self.rank.maximum()})", self.rank)
        form.addRow("alpha", self.alpha)
        form.addRow(buttons)
