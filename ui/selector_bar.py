"""Freeze or unfreeze by selector (path, glob, ``re:`` regex, ``type:`` class) with a live count of matches."""

from __future__ import annotations

import html

from PySide6.QtCore import QStringListModel, Qt, QTimer
from PySide6.QtWidgets import QComboBox, QCompleter, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from workbench.errors import WorkbenchError
from workbench.freezing import freeze_selector, match_selector
from workbench.resolve import resolve_plan
from workbench_ui.look import muted
from workbench_ui.session import WorkbenchSession

PLACEHOLDER = "layer*.bn?  ·  re:^blocks\\.[0-3]$  ·  type:BatchNorm2d"


def placeholder(type_names: set[str]) -> str:
    """Examples for the loaded model: a normalisation (or else the most common) layer type it really has."""
    if not type_names:
        return PLACEHOLDER
    norms = sorted(t for t in type_names if "Norm" in t)
    example = norms[0] if norms else sorted(type_names)[0]
    return PLACEHOLDER.replace("type:BatchNorm2d", f"type:{example}")


class SelectorBar(QWidget):
    """``[Freeze|Unfreeze] [selector] [Apply]`` and a line saying what the selector matches as it is typed.

    Apply (or Enter) is one undoable plan edit; the selector is stored in the plan as typed.
    """

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.mode = QComboBox()
        self.mode.addItem("Freeze", True)
        self.mode.addItem("Unfreeze", False)
        self.mode.setToolTip("What Apply does to everything the selector matches")
        self.selector = QLineEdit(placeholderText=PLACEHOLDER)
        self.selector.setClearButtonEnabled(True)
        self.selector.setToolTip("A module path, a glob over paths (layer*.bn?), a regular expression (re:^layer[12]$) "
                                 "or a module class (type:BatchNorm2d); kept in the project file as typed")
        self._types = QStringListModel(self)
        completer = QCompleter(self._types, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.selector.setCompleter(completer)
        self.apply = QPushButton("Apply")
        self.apply.setToolTip("Apply to the plan (one step: Ctrl+Z undoes it)")
        self.count = QLabel("")
        muted(self.count)
        self.count.setWordWrap(True)
        self.count.setTextFormat(Qt.TextFormat.RichText)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Select:"))
        row.addWidget(self.mode)
        row.addWidget(self.selector, 1)
        row.addWidget(self.apply)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.count)

        self.selector.textChanged.connect(self.update_count)
        self.mode.currentIndexChanged.connect(self.update_count)
        self.selector.returnPressed.connect(self.apply_selector)
        self.apply.clicked.connect(self.apply_selector)
        session.workspaceChanged.connect(self._workspace_changed)
        # After a plan edit the count is refreshed a moment later: a tick stays fast while a selector is typed.
        self._later = QTimer(self, singleShot=True, interval=150)
        self._later.timeout.connect(self.update_count)
        session.resolutionChanged.connect(self._later.start)
        self._workspace_changed()

    def _workspace_changed(self) -> None:
        ws = self.session.workspace
        types = sorted({n.type_name for n in ws.tree.nodes if n.path}) if ws is not None else []
        self._types.setStringList([f"type:{t}" for t in types])
        self.selector.setPlaceholderText(placeholder(set(types)))
        self.update_count()

    def set_locked(self, locked: bool) -> None:
        for w in (self.mode, self.selector, self.apply):
            w.setEnabled(not locked and self.session.workspace is not None)

    def update_count(self) -> None:
        """Say what the typed selector matches and what Apply would change (nothing is edited)."""
        ws, text = self.session.workspace, self.selector.text().strip()
        self.apply.setEnabled(False)
        if ws is None or not text:
            self.count.setText("")
            return
        frozen = bool(self.mode.currentData())
        try:
            match = match_selector(ws.tree, text)
            trial = ws.plan.copy()
            freeze_selector(trial, ws.tree, text, frozen)
            after = resolve_plan(ws.tree, trial, ws.default_groups()).trainable_params
        except WorkbenchError as exc:
            self.count.setText(f"<span style='color:#b00020'>{html.escape(str(exc))}</span>")
            return
        before = self.session.resolution.trainable_params if self.session.resolution is not None else after
        changed = abs(before - after)
        verb = "freezes" if frozen else "unfreezes"
        effect = (f"{verb} {changed:,} parameters that are {'trainable' if frozen else 'frozen'} now" if changed
                  else f"nothing changes: already {'frozen' if frozen else 'trainable'}")
        self.count.setText(f"matches {html.escape(match.describe())} · Apply {effect}")
        self.apply.setEnabled(True)

    def apply_selector(self) -> None:
        ws, text = self.session.workspace, self.selector.text().strip()
        if ws is None:
            return
        frozen = bool(self.mode.currentData())
        error = self.session.edit(lambda plan: freeze_selector(plan, ws.tree, text, frozen),
                                  f"{'Freeze' if frozen else 'Unfreeze'} {text}")
        if error:  # said inline, under the box: no dialog on top of it
            self.count.setText(f"<span style='color:#b00020'>{html.escape(error)}</span>")
        else:
            self.update_count()
