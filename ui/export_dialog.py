"""The export dialog: format, output path, and the exporter's parity check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench_ui.look import muted
from workbench_ui.workers import BackgroundCall


def export_formats() -> list[tuple[str, str, bool, str]]:
    """(exporter name, label, writes a folder?, file suffix) for every installed exporter plugin."""
    from workbench.plugins import EXPORTERS, registry

    formats = []
    for name, exporter in sorted(registry().plugins(EXPORTERS).items()):
        description = getattr(exporter, "description", "") or name
        folder = getattr(exporter, "output_kind", "file") == "folder"
        formats.append((name, f"{name}: {description}", folder, getattr(exporter, "suffix", "")))
    return formats


class ExportDialog(QDialog):
    def __init__(self, module: Any, spec: Any, recipe_toml: str | None, default_dir: Path,
                 parent: QWidget | None = None, weights_label: str = "", untrained_warning: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.setMinimumWidth(620)
        self._module, self._spec, self._recipe = module, spec, recipe_toml
        # Asked before exporting initial weights of a project that has runs.
        self._untrained_warning = untrained_warning
        self.weights = QLabel(f"<b>Weights:</b> {weights_label}" if weights_label else "")
        self.weights.setWordWrap(True)
        self._default_dir = default_dir
        self.call: BackgroundCall | None = None
        self.result: Any = None
        self.error: str | None = None

        self.format = QComboBox()
        self.formats = export_formats()
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
        note = QLabel("Class names, input size and mean/std are written with every format.")
        muted(note)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.outcome = QLabel("")
        self.outcome.setWordWrap(True)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(120)
        self.details.hide()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.weights)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.busy)
        layout.addWidget(self.outcome)
        layout.addWidget(self.details)
        layout.addWidget(self.buttons)

        self.format.currentIndexChanged.connect(self._format_changed)
        self.browse.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        self._format_changed()

    def fmt(self) -> tuple[str, bool, str]:
        key, _label, folder, suffix = self.formats[self.format.currentIndex()]
        return key, folder, suffix

    def _format_changed(self) -> None:
        key, folder, suffix = self.fmt()
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
        module, spec, recipe = self._module, self._spec, self._recipe

        def export() -> Any:
            from workbench.export import export_model

            return export_model(module, spec, key, Path(out), recipe)

        self.result, self.error = None, None
        self.export_button.setEnabled(False)
        self.busy.show()
        self.outcome.setText(f"Exporting to {out}…")
        self.details.hide()
        self.call = BackgroundCall(export, f"export {key}", self)
        self.call.succeeded.connect(self._done)
        self.call.failed.connect(self._failed)
        self.call.finished.connect(self._finished)
        self.call.start()

    def is_busy(self) -> bool:
        return self.call is not None and self.call.is_running()

    def _done(self, result: Any) -> None:
        self.result = result
        if result.parity_max_abs_diff is None:
            parity = "no parity check for this format"
        else:
            parity = f"parity check: max |Δ| = {result.parity_max_abs_diff:.2e} against the PyTorch model"
        self.outcome.setText(f"<b style='color:#1b7f3b'>Exported ({result.format})</b> — {parity}<br>{result.message}")
        self.details.setPlainText("\n".join(str(p) for p in result.paths))
        self.details.show()

    def _failed(self, message: str, detail: str) -> None:
        self.error = message
        self.outcome.setText(f"<b style='color:#b00020'>Export failed:</b> {message}")
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
