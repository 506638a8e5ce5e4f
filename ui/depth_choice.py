"""Acting on the probe by depth: pick a depth, then "Freeze up to here" or "Cut here and add a new head…".

The chart answers "where do the features stop transferring?"; this row turns the answer into the plan.
Freezing is one undoable edit through the session; cutting opens the same head dialog as the Layers tab's
"Cut here" (``cutRequested(path)``, wired by the window to the tree panel).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from workbench_ui.session import WorkbenchSession


class DepthChoice(QWidget):
    cutRequested = Signal(str)
    failed = Signal(str, str)

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.results: list[Any] = []
        self.depth = QComboBox()
        self.depth.setMinimumContentsLength(30)
        self.freeze = QPushButton("Freeze up to here")
        self.freeze.setToolTip("Freeze every layer from the input up to this depth; the rest trains")
        self.cut = QPushButton("Cut here and add a new head…")
        self.cut.setToolTip("Keep the model up to this depth and put a new head on its output")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Depth"), self.depth, self.freeze, self.cut):
            row.addWidget(w)
        row.addStretch(1)
        self.depth.currentIndexChanged.connect(self._enable)
        self.freeze.clicked.connect(self.freeze_up_to_chosen)
        self.cut.clicked.connect(lambda: self.cutRequested.emit(self.chosen().path))
        self.show_results(None)

    def show_results(self, probe: Any) -> None:
        """The depths of a ``DepthProbe`` (None: nothing probed yet, the row is hidden), best one chosen."""
        self.results = list(probe.results) if probe is not None else []
        self.depth.clear()
        for r in self.results:
            self.depth.addItem(f"{r.label}: {r.val_top1:.1%} top-1, {r.params_kept:,} parameters kept")
        if self.results:
            best = max(range(len(self.results)), key=lambda i: self.results[i].val_top1)
            self.depth.setCurrentIndex(best)
        self.setVisible(bool(self.results))
        self._enable()

    def chosen(self) -> Any:
        return self.results[self.depth.currentIndex()]

    def _is_classifier_input(self, result: Any) -> bool:
        ws = self.session.workspace
        return ws is not None and result.path == ws.backbone.spec.classifier

    def _enable(self) -> None:
        ok = bool(self.results) and self.depth.currentIndex() >= 0
        self.freeze.setEnabled(ok)
        self.cut.setEnabled(ok and not self._is_classifier_input(self.chosen()))

    def freeze_up_to_chosen(self) -> None:
        from workbench import freezing

        ws = self.session.workspace
        if ws is None or not self.results:
            return
        result = self.chosen()
        if self._is_classifier_input(result):  # the classifier's input: everything before it, i.e. a linear probe
            error = self.session.edit(lambda plan: freezing.linear_probe(plan, ws.tree),
                                      "Freeze everything before the classifier")
        else:
            error = self.session.edit(lambda plan: freezing.freeze_up_to(plan, ws.tree, result.path),
                                      f"Freeze everything up to {result.path}")
        if error:
            self.failed.emit(error, "")
