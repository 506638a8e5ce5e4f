"""The Training tab's process picker: tick several CUDA devices (or CPU × N processes) to train under torchrun.

Nothing ticked is the ordinary one-process run on the Device above. The choice is a
``workbench.multi_process_launch.ProcessChoice``; its limits come from there.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from workbench.multi_process_launch import MIN_PROCESSES, ProcessChoice, cpu_process_limit


class DevicePicker(QWidget):
    """One check box per visible CUDA device; on a machine without CUDA, "CPU × N processes (gloo)"."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gpu_boxes: list[tuple[int, QCheckBox]] = []
        self.cpu_box = QCheckBox("CPU ×")
        self.cpu_box.setToolTip("Train in several CPU processes under torchrun (DDP over gloo); rank 0 reports here")
        self.cpu_count = QSpinBox()
        self.cpu_count.setRange(MIN_PROCESSES, cpu_process_limit())
        self.cpu_count.setSuffix(" processes (gloo)")
        self.cpu_count.setToolTip(f"{MIN_PROCESSES} to one per CPU core ({cpu_process_limit()} here)")
        self.summary = QLabel()
        self._gpu_row = QVBoxLayout()
        cpu_row = QHBoxLayout()
        cpu_row.addWidget(self.cpu_box)
        cpu_row.addWidget(self.cpu_count, 1)
        self._cpu_row = QWidget()
        self._cpu_row.setLayout(cpu_row)
        cpu_row.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._gpu_row)
        layout.addWidget(self._cpu_row)
        layout.addWidget(self.summary)
        self.cpu_box.toggled.connect(self._changed)
        self.cpu_count.valueChanged.connect(self._changed)
        self._changed()

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """The devices found on this machine (``workbench.training.devices.available_devices``)."""
        for _, box in self.gpu_boxes:
            box.deleteLater()
        self.gpu_boxes = []
        for device_id, description in devices:
            if device_id.startswith("cuda:"):
                box = QCheckBox(f"{device_id}: {description}")
                box.toggled.connect(self._changed)
                self._gpu_row.addWidget(box)
                self.gpu_boxes.append((int(device_id.split(":")[1]), box))
        self._cpu_row.setVisible(not self.gpu_boxes)  # with GPUs, the processes go one per ticked GPU
        if self.gpu_boxes:
            self.cpu_box.setChecked(False)
        self._changed()

    def choice(self) -> ProcessChoice | None:
        """Several processes, or None for the ordinary run."""
        ticked = tuple(index for index, box in self.gpu_boxes if box.isChecked())
        if len(ticked) >= MIN_PROCESSES:
            return ProcessChoice(gpus=ticked)
        if not self.gpu_boxes and self.cpu_box.isChecked():
            return ProcessChoice(nproc=self.cpu_count.value())
        return None

    def _changed(self, *_: object) -> None:
        choice = self.choice()
        ticked = sum(box.isChecked() for _, box in self.gpu_boxes)
        if choice is not None:
            self.summary.setText("torchrun (DDP); rank 0 reports here")
            self.summary.setToolTip(f"{choice.describe()}: Pause and Stop reach every process; a process that "
                                    "dies is named, the others are stopped, Continue resumes")
        elif ticked == 1:
            self.summary.setText("one GPU ticked: tick two or more")
        else:
            self.summary.setText("off: one process on the Device above")
        self.cpu_count.setEnabled(self.cpu_box.isChecked())
        self.changed.emit()
