"""Gradient clipping, LR warmup, label smoothing and layer-wise LR decay: typed exactly, bound to ``[train]``,
undoable; the decay's range is the schema's."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QWidget

from workbench.plan import TrainConfig
from workbench.schema_limits import field_limits
from workbench_ui.dialogs import show_error
from workbench_ui.session import WorkbenchSession
from workbench_ui.widgets import ScientificSpinBox

DEFAULT_CLIP = 1.0
DEFAULT_LAYER_DECAY = 0.75  # timm's train.py and BEiT's usual value


class OptimizationRows(QObject):
    """Three rows for a settings form; every change is one plan edit (Ctrl+Z undoes it)."""

    LABELS = {"grad_clip": "gradient clipping", "warmup_epochs": "warmup", "label_smoothing": "label smoothing",
              "layer_decay": "layer-wise LR decay"}

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._parent = parent
        self.clip_on = QCheckBox("max norm")
        self.clip_on.setToolTip("Rescale the gradients of each step so their total norm is at most this")
        self.grad_clip = ScientificSpinBox(DEFAULT_CLIP)
        self.grad_clip.setToolTip("[train] grad_clip: the largest gradient norm a step may use (> 0)")
        self.warmup = ScientificSpinBox(0.0, allow_zero=True)
        self.warmup.setToolTip("[train] warmup_epochs: the LR ramps up linearly over this many epochs (fractions "
                               "allowed; constant and cosine schedules)")
        self.label_smoothing = ScientificSpinBox(0.0, allow_zero=True, below=1.0)
        self.label_smoothing.setToolTip("[train] label_smoothing: share of each target spread over the other classes "
                                        "(0 = off, below 1)")
        limits = field_limits(TrainConfig, "layer_decay")
        self.decay_on = QCheckBox("decay")
        self.decay_on.setToolTip("Layer-wise LR decay: each group without its own LR trains at LR × decay^(its "
                                 "distance from the head), so early layers move least")
        self.layer_decay = ScientificSpinBox(DEFAULT_LAYER_DECAY, maximum=limits.maximum)
        self.layer_decay.setToolTip(f"[train] layer_decay: {limits.describe()}; a group's own LR wins over it")
        self.decay_row = QWidget()
        decay = QHBoxLayout(self.decay_row)
        decay.setContentsMargins(0, 0, 0, 0)
        decay.addWidget(self.decay_on)
        decay.addWidget(self.layer_decay, 1)
        self.clip_row = QWidget()
        row = QHBoxLayout(self.clip_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.clip_on)
        row.addWidget(self.grad_clip, 1)

        self.clip_on.toggled.connect(self._clip_toggled)
        self.grad_clip.valueChanged.connect(lambda v: self.clip_on.isChecked() and self._set("grad_clip", float(v)))
        self.warmup.valueChanged.connect(lambda v: self._set("warmup_epochs", float(v)))
        self.label_smoothing.valueChanged.connect(lambda v: self._set("label_smoothing", float(v)))
        self.decay_on.toggled.connect(self._decay_toggled)
        self.layer_decay.valueChanged.connect(
            lambda v: self.decay_on.isChecked() and self._set("layer_decay", float(v)))
        for box in (self.grad_clip, self.warmup, self.label_smoothing, self.layer_decay):
            box.rejected.connect(lambda message: show_error(self._parent, "That change was not applied", message))
        session.workspaceChanged.connect(self.sync_from_plan)
        session.planReplaced.connect(self.sync_from_plan)
        self.sync_from_plan()

    def add_to(self, form: QFormLayout) -> None:
        form.addRow("Gradient clipping", self.clip_row)
        row = QHBoxLayout()  # two short numbers share a row: the Training tab's column is tight at 900 px
        row.addWidget(self.warmup, 1)
        smoothing = QLabel("Label smoothing")
        smoothing.setBuddy(self.label_smoothing)
        row.addWidget(smoothing)
        row.addWidget(self.label_smoothing, 1)
        form.addRow("Warmup epochs", row)
        form.addRow("Layer-wise LR decay", self.decay_row)

    def widgets(self) -> tuple[QWidget, ...]:
        return (self.clip_on, self.grad_clip, self.warmup, self.label_smoothing, self.decay_on, self.layer_decay)

    def set_enabled(self, enabled: bool) -> None:
        for w in self.widgets():
            w.setEnabled(enabled)
        self.grad_clip.setEnabled(enabled and self.clip_on.isChecked())
        self.layer_decay.setEnabled(enabled and self.decay_on.isChecked())

    def sync_from_plan(self) -> None:
        train = self.session.plan.train
        for w in self.widgets():
            w.blockSignals(True)
        self.clip_on.setChecked(train.grad_clip is not None)
        if train.grad_clip is not None:
            self.grad_clip.setValue(train.grad_clip)
        self.warmup.setValue(train.warmup_epochs)
        self.label_smoothing.setValue(train.label_smoothing)
        self.decay_on.setChecked(train.layer_decay is not None)
        if train.layer_decay is not None:
            self.layer_decay.setValue(train.layer_decay)
        for w in self.widgets():
            w.blockSignals(False)
        self.grad_clip.setEnabled(self.clip_on.isEnabled() and train.grad_clip is not None)
        self.layer_decay.setEnabled(self.decay_on.isEnabled() and train.layer_decay is not None)

    def _clip_toggled(self, on: bool) -> None:
        self.grad_clip.setEnabled(on)
        self._set("grad_clip", float(self.grad_clip.value()) if on else None)

    def _decay_toggled(self, on: bool) -> None:
        self.layer_decay.setEnabled(on)
        self._set("layer_decay", float(self.layer_decay.value()) if on else None)

    def _set(self, key: str, value: Any) -> None:
        if getattr(self.session.plan.train, key) != value:
            error = self.session.edit(lambda plan: setattr(plan.train, key, value), f"Set {self.LABELS[key]}")
            if error:
                show_error(self._parent, "That change was not applied", error)
