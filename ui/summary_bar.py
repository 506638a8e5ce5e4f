"""The summary bar under the tabs: trainable / total parameters and the plan's warnings, always visible."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from workbench_ui.session import WorkbenchSession

SHOWN_WARNINGS = 2


class SummaryBar(QFrame):
    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("summaryBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.summary = QLabel("No model loaded")
        self.summary.setObjectName("summaryText")
        self.summary.setWordWrap(True)  # never let one long line set the window's minimum width
        self.share = QProgressBar()
        self.share.setRange(0, 1000)
        self.share.setTextVisible(False)
        self.share.setFixedWidth(120)
        self.share.setFixedHeight(10)
        self.share.setToolTip("Share of parameters that train")
        self.groups = QLabel("")
        self.groups.setObjectName("muted")
        self.groups.setWordWrap(True)
        self.cost = QLabel("")
        self.cost.setObjectName("costText")
        self.cost.setWordWrap(True)
        self.cost.setToolTip("Gradients + optimizer state the plan needs, and its step compute (forward for all, "
                             "backward only where gradients flow) relative to full fine-tuning")
        self.warnings = QLabel("")
        self.warnings.setObjectName("warnings")
        self.warnings.setWordWrap(True)
        self.warnings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QHBoxLayout()
        top.addWidget(self.summary, 3)
        top.addWidget(self.share)
        top.addStretch(1)
        top.addWidget(self.groups, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(self.cost)
        layout.addWidget(self.warnings)
        # Trap: a label that grows by a line re-lays out the whole window and repaints every widget in it
        # (hundreds of ms on a big tree). Reserving the lines keeps a tick's repaint to the labels themselves.
        # (The warnings line is shown only while there are warnings: that relayout happens when they come or go.)
        line = self.fontMetrics().lineSpacing()
        self.summary.setMinimumHeight(2 * line)
        self.cost.setMinimumHeight(2 * line)
        self.warnings.setMinimumHeight(SHOWN_WARNINGS * line + 2)
        session.resolutionChanged.connect(self.refresh)
        session.problemsChanged.connect(self.show_problems)
        self.refresh()

    def refresh(self) -> None:
        res = self.session.resolution
        if res is None:
            self.summary.setText("No model loaded")
            self.share.setValue(0)
            self.groups.setText("")
            self.cost.setText("")
            self.warnings.setText("")
            self.warnings.hide()
            return
        self.summary.setText(res.summary())
        self.share.setValue(int(1000 * res.trainable_params / res.total_params) if res.total_params else 0)
        self.cost.setText(self._cost_text(res))
        active = [g for g in res.groups if g.numel]
        self.groups.setText(f"{len(active)} of {len(res.groups)} optimizer groups train")
        self.show_problems()

    def show_problems(self) -> None:
        """The plan's problems (``session.problems``: the resolver's warnings and the preflight checks), errors first."""
        problems = self.session.problems if self.session.resolution is not None else []
        if problems:
            shown = [f"{'✖' if p.is_error else '⚠'} {p.message}" for p in problems[:SHOWN_WARNINGS]]
            hidden = len(problems) - len(shown)
            if hidden:
                shown[-1] += f"   (+{hidden} more: hover to see all, or the Training tab's list)"
            self.warnings.setText("\n".join(shown))
            self.warnings.setToolTip("\n".join(f"{p.severity}: {p}" for p in problems))
            self.warnings.show()
        else:
            self.warnings.setText("")
            self.warnings.hide()

    def _cost_text(self, res) -> str:
        from workbench.cost import plan_cost, workspace_cost_model

        ws = self.session.workspace
        if ws is None or ws.tree is not res.tree:
            return ""
        try:
            model = workspace_cost_model(ws)  # one forward pass, the first time only
        except Exception as exc:  # a model the FLOP counter cannot trace still edits fine
            return f"cost estimate unavailable: {exc}"
        return plan_cost(model, res, ws.plan.train).short()
