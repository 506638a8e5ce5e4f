"""The summary bar under the tabs: trainable / total parameters and the plan's warnings, always visible."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from workbench_ui.look import emphasised, muted, summary_frame, warning_text
from workbench_ui.session import WorkbenchSession

SHARE_STEPS = 1000  # the trainable-share bar's resolution (per mille), a display choice, not a limit


class ElidedLabel(QLabel):
    """One line that never changes height: text too long for it ends in "…" (the tooltip has it all)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(self.width(), 40)))


class SummaryBar(QFrame):
    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        summary_frame(self)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.summary = QLabel("No model loaded")
        emphasised(self.summary)
        self.summary.setWordWrap(True)  # never let one long line set the window's minimum width
        self.share = QProgressBar()
        self.share.setRange(0, SHARE_STEPS)
        self.share.setTextVisible(False)
        self.share.setFixedWidth(120)
        self.share.setFixedHeight(10)
        self.share.setToolTip("Share of parameters that train")
        self.groups = QLabel("")
        muted(self.groups)
        self.groups.setWordWrap(True)
        self.cost = QLabel("")
        self.cost.setObjectName("costText")
        self.cost.setWordWrap(True)
        self.cost.setToolTip("Gradients + optimizer state the plan needs, and its step compute (forward for all, "
                             "backward only where gradients flow) relative to full fine-tuning")
        self.warnings = ElidedLabel()
        warning_text(self.warnings)

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
        # The problems line is always there (empty when there are none) and always one line high.
        line = self.fontMetrics().lineSpacing()
        self.summary.setMinimumHeight(2 * line)
        self.cost.setMinimumHeight(2 * line)
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
            self.warnings.set_full_text("")
            return
        self.summary.setText(res.summary())
        # Trap: QProgressBar.setValue repaints at once, and that paints everything else waiting to be painted
        # (the whole layer tree) before the other views have caught up: paint once, with the rest, instead.
        self.share.setUpdatesEnabled(False)
        self.share.setValue(int(SHARE_STEPS * res.trainable_params / res.total_params) if res.total_params else 0)
        self.share.setUpdatesEnabled(True)
        self.cost.setText(self._cost_text(res))
        active = [g for g in res.groups if g.numel]
        self.groups.setText(f"{len(active)} of {len(res.groups)} optimizer groups train")
        self.show_problems()

    def show_problems(self) -> None:
        """The plan's problems (``session.problems``: the resolver's warnings and the preflight checks), errors first."""
        problems = self.session.problems if self.session.resolution is not None else []
        mark = "✖" if any(p.is_error for p in problems) else "⚠"
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        self.warnings.set_full_text(f"{mark} {count}" + " · ".join(str(p) for p in problems) if problems else "")
        self.warnings.setToolTip("\n".join(f"{p.severity}: {p}" for p in problems))

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
