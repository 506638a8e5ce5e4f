"""The export dialog: format, output path, the ONNX variant (INT8 / fp16 / preprocessing inside), and the
export report that proves the written file on the validation images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench_ui.look import muted
from workbench_ui.workers import BackgroundCall

QT_INT_MAX = 2**31 - 1  # the largest value a QSpinBox holds


def export_formats() -> list[tuple[str, str, bool, str]]:
    """(exporter name, label, writes a folder?, file suffix) for every installed exporter plugin."""
    from workbench.plugins import EXPORTERS, registry

    formats = []
    for name, exporter in sorted(registry().plugins(EXPORTERS).items()):
        description = getattr(exporter, "description", "") or name
        folder = getattr(exporter, "output_kind", "file") == "folder"
        formats.append((name, f"{name}: {description}", folder, getattr(exporter, "suffix", "")))
    return formats


def variant_formats() -> set[str]:
    """The exporters whose file the INT8 / fp16 / preprocessing variants are made from (``makes_onnx_variants``)."""
    from workbench.export_pipeline import makes_onnx_variants
    from workbench.plugins import EXPORTERS, registry

    return {name for name, exporter in registry().plugins(EXPORTERS).items() if makes_onnx_variants(exporter)}


REPORT_COLUMNS = ("Format", "Top-1", "Agreement", "Δ points", "max |Δ logit|", "Size", "Latency b1", "Throughput b32")


class ExportDialog(QDialog):
    progress = Signal(str)  # emitted from the export thread; queued to this dialog's thread

    def __init__(self, module: Any, spec: Any, recipe_toml: str | None, default_dir: Path,
                 parent: QWidget | None = None, weights_label: str = "", untrained_warning: str = "",
                 plan: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.setMinimumWidth(760)
        self._module, self._spec, self._recipe = module, spec, recipe_toml
        self._plan = plan  # its data gives the validation/calibration images; None: synthetic inputs
        # Asked before exporting initial weights of a project that has runs.
        self._untrained_warning = untrained_warning
        self.weights = QLabel(f"<b>Weights:</b> {weights_label}" if weights_label else "")
        self.weights.setWordWrap(True)
        self._default_dir = default_dir
        self.call: BackgroundCall | None = None
        self.refused_report: Any = None  # the figures of an export the accuracy check refused
        self.result: Any = None
        self.error: str | None = None

        self.format = QComboBox()
        self.formats = export_formats()
        self._variant_formats = variant_formats()
        for key, label, _folder, _suffix in self.formats:
            self.format.addItem(label, key)
        self.format.setCurrentIndex(max(0, self.format.findData("safetensors")))  # lossless default
        self.path = QLineEdit()
        self.browse = QPushButton("Browse…")
        self.browse.setAutoDefault(False)  # Enter in the path exports; it must not open the file dialog
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Output", row)
        note = QLabel("Class names, input size and mean/std are written with every format. Every export is run "
                      "on the validation images and reported beside the files (export_report.json).")
        note.setWordWrap(True)
        muted(note)
        self.onnx_box = self._onnx_options()
        # Word-wrapped labels below make the layout squeeze this form's rows when the report appears.
        self.onnx_box.setMinimumHeight(self.onnx_box.sizeHint().height())

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.outcome = QLabel("")
        self.outcome.setWordWrap(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(70)
        self.details.hide()
        self.report = QTableWidget(0, len(REPORT_COLUMNS))
        self.report.setHorizontalHeaderLabels(list(REPORT_COLUMNS))
        self.report.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.report.verticalHeader().hide()
        self.report.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.report.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.report.hide()
        self.report_notes = QLabel("")
        self.report_notes.setWordWrap(True)
        self.report_notes.hide()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.weights)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.onnx_box)
        layout.addWidget(self.busy)
        layout.addWidget(self.outcome)
        layout.addWidget(self.report)
        layout.addWidget(self.report_notes)
        layout.addWidget(self.details)
        layout.addWidget(self.buttons)

        self.format.currentIndexChanged.connect(self._format_changed)
        self.browse.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        self.progress.connect(self._progress)
        self._format_changed()

    def _onnx_options(self) -> QGroupBox:
        from workbench.export_data import DEFAULT_CALIBRATION_IMAGES
        from workbench.export_pipeline import DEFAULT_MAX_DROP_POINTS, MAX_DROP_RANGE
        from workbench.onnx_variants import CALIBRATION_METHODS

        box = QGroupBox("ONNX variant")
        self.quantize = QComboBox()
        for label, key in (("none (fp32)", None), ("INT8 static (QDQ, per-channel, calibrated)", "int8"),
                           ("INT8 dynamic", "int8-dynamic")):
            self.quantize.addItem(label, key)
        self.precision = QComboBox()
        self.precision.addItem("fp32", "fp32")
        self.precision.addItem("fp16 (for GPU targets)", "fp16")
        self.keep_io = QCheckBox("Keep inputs/outputs float32")
        self.with_preprocessing = QCheckBox("Preprocessing inside the file (takes uint8 N×H×W×C images, 0–255)")
        self.calibration = QSpinBox()
        # Any count Qt can hold: the real bound is the run's training images, checked (and said) on export.
        self.calibration.setRange(0, QT_INT_MAX)
        self.calibration.setSpecialValueText(f"up to {DEFAULT_CALIBRATION_IMAGES} training images")
        self.calibration.setValue(0)
        self.calibration_method = QComboBox()
        for method in CALIBRATION_METHODS:
            self.calibration_method.addItem(method, method)
        self.max_drop = QDoubleSpinBox()
        self.max_drop.setRange(*MAX_DROP_RANGE)
        self.max_drop.setDecimals(2)
        self.max_drop.setSuffix(" points")
        self.max_drop.setValue(DEFAULT_MAX_DROP_POINTS)
        self.accept_drop = QCheckBox("Write it even if accuracy drops more")
        form = QFormLayout(box)
        form.addRow("Quantize", self.quantize)
        calibration = QHBoxLayout()
        calibration.addWidget(self.calibration, 1)
        calibration.addWidget(QLabel("ranges"))
        calibration.addWidget(self.calibration_method)
        form.addRow("Calibration images", calibration)
        precision = QHBoxLayout()
        precision.addWidget(self.precision)
        precision.addWidget(self.keep_io)
        precision.addStretch(1)
        form.addRow("Precision", precision)
        form.addRow("", self.with_preprocessing)
        drop = QHBoxLayout()
        drop.addWidget(self.max_drop)
        drop.addWidget(self.accept_drop)
        drop.addStretch(1)
        form.addRow("Largest top-1 loss", drop)
        for combo in (self.quantize, self.precision):
            combo.currentIndexChanged.connect(self._variant_changed)
        return box

    def _variant_changed(self) -> None:
        int8 = self.quantize.currentData() == "int8"
        lossy = self.quantize.currentData() is not None or self.precision.currentData() == "fp16"
        self.calibration.setEnabled(int8)
        self.calibration_method.setEnabled(int8)
        self.keep_io.setEnabled(self.precision.currentData() == "fp16")
        self.max_drop.setEnabled(lossy)
        self.accept_drop.setEnabled(lossy)

    def options(self) -> Any:
        """The ExportOptions the controls describe (ONNX-only choices only for ONNX)."""
        from workbench.export_pipeline import ExportOptions

        onnx = self.fmt()[0] in self._variant_formats
        fp16 = onnx and self.precision.currentData() == "fp16"
        return ExportOptions(
            quantize=self.quantize.currentData() if onnx else None,
            precision="fp16" if fp16 else "fp32",
            keep_io_float32=fp16 and self.keep_io.isChecked(),
            with_preprocessing=onnx and self.with_preprocessing.isChecked(),
            calibration_images=(self.calibration.value() or None) if onnx and self.quantize.currentData() == "int8"
            else None,
            calibration_method=self.calibration_method.currentData() if onnx and self.quantize.currentData() == "int8"
            else "minmax",
            max_accuracy_drop=self.max_drop.value(),
            accept_accuracy_drop=self.accept_drop.isChecked(),
        )

    def fmt(self) -> tuple[str, bool, str]:
        key, _label, folder, suffix = self.formats[self.format.currentIndex()]
        return key, folder, suffix

    def _format_changed(self) -> None:
        key, folder, suffix = self.fmt()
        self.onnx_box.setVisible(key in self._variant_formats)
        self._variant_changed()
        stem = self._spec.architecture.replace(":", "_").replace("/", "_")
        self.path.setText(str(self._default_dir / (f"{stem}-export" if folder else f"{stem}{suffix}")))

    def _browse(self) -> None:
        key, folder, suffix = self.fmt()
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", str(self._default_dir))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to file", self.path.text(), f"*{suffix}")
        if path:
            self.path.setText(path)

    def start_export(self) -> None:
        out = self.path.text().strip()
        if not out:
            self.outcome.setText("Choose where to write the export.")
            return
        if self._untrained_warning:
            from workbench_ui.dialogs import ask_yes_no

            if not ask_yes_no(self, "Export untrained weights?", self._untrained_warning):
                self.outcome.setText("Not exported. Open a run on the Runs panel to export its weights.")
                return
        key, _folder, _suffix = self.fmt()
        module, spec, recipe, plan = self._module, self._spec, self._recipe, self._plan
        options = self.options()
        say = self.progress.emit

        self.refused_report = None

        def export() -> Any:
            from workbench.export_pipeline import ExportRefused, export_with_report, report_data

            options.check(key, spec)
            say("opening the validation images")
            data = report_data(plan, spec, options, "no dataset loaded")
            try:
                return export_with_report(module, spec, key, Path(out), recipe, options, data, say)
            except ExportRefused as refused:
                self.refused_report = refused.report  # read in _failed, after this thread has finished
                raise

        self.result, self.error = None, None
        self.export_button.setEnabled(False)
        self.busy.show()
        self.outcome.setText(f"Exporting to {out}…")
        self.details.hide()
        self.report.hide()
        self.report_notes.hide()
        self.call = BackgroundCall(export, f"export {key}", self)
        self.call.succeeded.connect(self._done)
        self.call.failed.connect(self._failed)
        self.call.finished.connect(self._finished)
        self.call.start()

    def is_busy(self) -> bool:
        return self.call is not None and self.call.is_running()

    def _progress(self, text: str) -> None:
        if self.is_busy():
            self.outcome.setText(f"{text}…")

    def _done(self, outcome: Any) -> None:
        result = outcome.result
        self.result = result
        self.show_report(outcome.report, outcome.report_path)
        if result.parity_max_abs_diff is None:
            parity = "no parity check for this format"
        else:
            parity = f"parity check: max |Δ| = {result.parity_max_abs_diff:.2e} against the PyTorch model"
        self.outcome.setText(f"<b style='color:#1b7f3b'>Exported ({result.format})</b> — {parity}<br>{result.message}")
        self.details.setPlainText("\n".join(str(p) for p in [*result.paths, outcome.report_path]))
        self.details.show()

    def show_report(self, report: Any, path: Path | None) -> None:
        """The report's rows as a table; the reference rows (not written) in grey, notes below."""
        from PySide6.QtGui import QBrush, QPalette

        from workbench.export_report import human_size

        grey = QBrush(self.palette().color(QPalette.ColorRole.Mid))
        self.report.setRowCount(len(report.rows))
        for r, row in enumerate(report.rows):
            cells = [row.name + ("" if row.written else " (reference)"),
                     _pct(row.top1, 2), _pct(row.agreement, 1),
                     f"{row.delta_points:+.2f}" if row.delta_points is not None else "—",
                     _num(row.max_abs_logit_diff, "{:.3g}"),
                     human_size(row.size_bytes) if row.size_bytes is not None else "—",
                     _num(row.latency_ms_b1, "{:.2f} ms"), _num(row.throughput_b32, "{:.0f} img/s")]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if not row.written:
                    item.setForeground(grey)
                self.report.setItem(r, c, item)
        self.report.setFixedHeight(self.report.horizontalHeader().height() + 4
                                   + sum(self.report.rowHeight(r) for r in range(len(report.rows))))
        self.report.show()
        lines = [f"<b>On:</b> {report.data}"]
        lines += [f"<b>{row.name}:</b> {note}" for row in report.rows for note in row.notes]
        lines += [f"• {note}" for note in report.notes]
        where = f"Written to {path}." if path is not None else "Nothing written."
        lines.append(f"<span style='color:gray'>Measured on {report.conditions}. {where}</span>")
        self.report_notes.setText("<br>".join(lines))
        self.report_notes.show()
        # Grow to show the report once the layout has taken it in (adjustSize caps at 2/3 of the screen).
        QTimer.singleShot(0, lambda: self.resize(self.width(), max(self.height(), self.sizeHint().height())))

    def _failed(self, message: str, detail: str) -> None:
        self.error = message
        self.outcome.setText(f"<b style='color:#b00020'>Export failed:</b> {message}")
        if self.refused_report is not None:  # the figures the refusal is based on
            self.show_report(self.refused_report, None)
            return
        if detail:
            self.details.setPlainText(detail)
            self.details.show()

    def _finished(self) -> None:
        self.busy.hide()
        self.export_button.setEnabled(True)
        self.call = None

    def reject(self) -> None:
        if self.is_busy():
            self.outcome.setText("Still exporting; close when it has finished.")
            return
        super().reject()

    def closeEvent(self, event: Any) -> None:  # noqa: N802
        if self.is_busy():
            event.ignore()
            return
        super().closeEvent(event)


def _pct(value: float | None, digits: int) -> str:
    import math

    return f"{value:.{digits}%}" if value is not None and math.isfinite(value) else "—"


def _num(value: float | None, fmt: str) -> str:
    import math

    return fmt.format(value) if value is not None and math.isfinite(value) else "—"
