"""Parameter groups and learning rates: the groups table, discriminative LRs, the unfreeze schedule."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from workbench.groups import discriminative
from workbench.plan import FinetunePlan, GroupConfig, UnfreezeStep
from workbench_ui.group_picker import GroupPickerDelegate
from workbench_ui.look import muted
from workbench_ui.qt_layer_tree import format_count, format_lr
from workbench_ui.session import WorkbenchSession
from workbench_ui.widgets import ScientificDelegate, ScientificSpinBox, exact_text, parse_rate

ModelIndex = QModelIndex | QPersistentModelIndex


def explicit_groups(plan: FinetunePlan, defaults: list[GroupConfig]) -> list[GroupConfig]:
    """The plan's groups, first copying the model's default groups into it when it has none."""
    if not plan.groups:
        plan.groups = [GroupConfig(g.name, list(g.modules), g.lr, g.weight_decay) for g in defaults]
    return plan.groups


class QtGroupsModel(QAbstractTableModel):
    """The resolved optimizer groups; LR and weight decay are editable for the plan's own groups."""

    HEADERS = ("Group", "Trainable", "LR", "Weight decay")
    NAME, PARAMS, LR, WD = range(4)

    def __init__(self, session: WorkbenchSession, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self._rows: list[Any] = []
        self._shown: list[tuple[Any, ...]] = []  # what each row displays, to skip rows that did not change
        self._marks: list[tuple[str, str, str]] = []  # the problems marked on LR cells
        session.resolutionChanged.connect(self.refresh)
        session.problemsChanged.connect(self._problems_changed)
        self.refresh()

    def _problems_changed(self) -> None:
        marks = [(p.subject, p.severity, p.message) for p in self.session.problems if p.where == "groups"]
        if marks != self._marks and self._rows:
            self.dataChanged.emit(self.index(0, self.LR), self.index(len(self._rows) - 1, self.LR))
        self._marks = marks

    def refresh(self) -> None:
        """Show the current Resolution's groups; rows whose numbers did not change are left alone."""
        res = self.session.resolution
        groups = list(res.groups) if res is not None else []
        if [g.name for g in groups] != [g.name for g in self._rows]:
            self.beginResetModel()
            self._rows = groups
            self._shown = [_shown(g) for g in groups]
            self.endResetModel()
            return
        self._rows = groups
        shown = [_shown(g) for g in groups]
        changed = [r for r, (a, b) in enumerate(zip(self._shown, shown)) if a != b]
        self._shown = shown
        if changed:
            self.dataChanged.emit(self.index(changed[0], 0), self.index(changed[-1], len(self.HEADERS) - 1))

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.isValid() and index.column() in (self.LR, self.WD) and not self._rows[index.row()].auto:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        group = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.NAME:
                return group.name + (" (automatic)" if group.auto else "")
            if col == self.PARAMS:
                return format_count(group.numel) if group.numel else "frozen"
            if col == self.LR:
                return format_lr(group.lr)
            return f"{group.weight_decay:g}"
        if role == Qt.ItemDataRole.EditRole:
            return {self.LR: group.lr, self.WD: group.weight_decay}.get(col, None)
        if col == self.LR and role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ToolTipRole):
            problems = [p for p in self.session.problems if p.where == "groups" and p.subject == group.name]
            if problems and role == Qt.ItemDataRole.BackgroundRole:
                return QBrush(QColor(176, 0, 32, 60) if any(p.is_error for p in problems) else QColor(154, 103, 0, 50))
            if problems:
                return "\n".join([exact_text(group.lr)] + [f"{p.severity}: {p.message}" for p in problems])
        if role == Qt.ItemDataRole.ForegroundRole and not group.numel:
            return QBrush(QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        if role == Qt.ItemDataRole.TextAlignmentRole and col != self.NAME:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col in (self.LR, self.WD):
            return exact_text(group.lr if col == self.LR else group.weight_decay)
        if role == Qt.ItemDataRole.ToolTipRole and col == self.NAME:
            return f"{len(group.params)} parameter tensors, {group.numel:,} trainable parameters"
        return None

    def setData(self, index: ModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not (self.flags(index) & Qt.ItemFlag.ItemIsEditable):
            return False
        number, error = parse_rate(str(value), allow_zero=index.column() == self.WD)
        if error is not None:
            return False
        ws = self.session.workspace
        if ws is None:
            return False
        name = self._rows[index.row()].name
        field = "lr" if index.column() == self.LR else "weight_decay"

        def change(plan: FinetunePlan) -> None:
            group = next(g for g in explicit_groups(plan, ws.default_groups()) if g.name == name)
            setattr(group, field, number)

        return self.session.edit(change) is None


def _shown(group: Any) -> tuple[Any, ...]:
    return (group.name, group.auto, group.numel, group.lr, group.weight_decay, len(group.params))


class QtUnfreezeModel(QAbstractTableModel):
    """The gradual-unfreezing schedule: one row per step: epoch, comma-separated group names, and the one LR
    every group trains at from then on (blank: each group's own)."""

    HEADERS = ("Epoch", "Groups", "LR for all")
    TIPS = ("The epoch (0-based) at whose start the step applies", "The groups that become trainable",
            "From this epoch on every group trains at this LR (blank: each group keeps its own)")
    EPOCH, GROUPS, LR = range(3)
    problem = Signal(str)

    def __init__(self, session: WorkbenchSession, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self._steps: list[tuple[int, tuple[str, ...], float | None]] = []
        session.resolutionChanged.connect(self._refresh)
        session.workspaceChanged.connect(self._reset)

    def _refresh(self) -> None:
        if self._steps != self._current():  # a tick leaves the schedule as it is: no reset, no repaint
            self._reset()

    def _current(self) -> list[tuple[int, tuple[str, ...], float | None]]:
        return [(s.epoch, tuple(s.groups), s.lr) for s in self.session.plan.unfreeze]

    def _reset(self) -> None:
        self.beginResetModel()
        self._steps = self._current()
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.session.plan.unfreeze)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return self.TIPS[section]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return None
        step = self.session.plan.unfreeze[index.row()]
        if index.column() == self.EPOCH:
            return step.epoch if role == Qt.ItemDataRole.EditRole else f"{step.epoch}"
        if index.column() == self.LR:
            return "" if step.lr is None else (exact_text(step.lr) if role == Qt.ItemDataRole.EditRole else format_lr(step.lr))
        return list(step.groups) if role == Qt.ItemDataRole.EditRole else ", ".join(step.groups)

    def setData(self, index: ModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        row, col = index.row(), index.column()
        ws = self.session.workspace
        lr: float | None = None
        if col == self.LR and str(value).strip():
            lr, error = parse_rate(str(value), allow_zero=False)
            if error is not None:
                self.problem.emit(f"LR from epoch {self.session.plan.unfreeze[row].epoch} on: {error} "
                                  "(leave it blank for each group's own LR)")
                return False
        if col == self.GROUPS:
            picked = [g.strip() for g in (value.split(",") if isinstance(value, str) else value) if str(g).strip()]
            if not picked:
                self.problem.emit(f"pick at least one group for the step at epoch {self.session.plan.unfreeze[row].epoch} "
                                  "(or remove the step)")
                return False

        def change(plan: FinetunePlan) -> None:
            if ws is not None:
                explicit_groups(plan, ws.default_groups())
            step = plan.unfreeze[row]
            if col == self.EPOCH:
                step.epoch = int(value)
            elif col == self.LR:
                step.lr = lr
            else:
                step.groups = picked

        try:
            error = self.session.edit(change, "Edit the unfreeze schedule")
        except ValueError:
            error = f"epoch must be a whole number, not {value!r}"
        if error:
            self.problem.emit(error)
            return False
        return True

    def group_names(self) -> list[str]:
        """The groups a step can name: the plan's own, or the model's default groups."""
        ws = self.session.workspace
        groups = self.session.plan.groups or (ws.default_groups() if ws is not None else [])
        return [g.name for g in groups]

    def add_step(self) -> str | None:
        ws = self.session.workspace
        if ws is None:
            return "load a model first"
        res = self.session.resolution
        frozen = [g.name for g in (res.groups if res else []) if not g.numel and not g.auto]
        scheduled = {n for s in self.session.plan.unfreeze for n in s.groups}
        candidates = [n for n in reversed(frozen) if n not in scheduled]
        if not candidates:
            return "every frozen group is already scheduled; freeze some layers first"
        epoch = max((s.epoch for s in self.session.plan.unfreeze), default=0) + 1

        def change(plan: FinetunePlan) -> None:
            explicit_groups(plan, ws.default_groups())
            plan.unfreeze.append(UnfreezeStep(epoch, [candidates[0]]))

        return self.session.edit(change)

    def remove_step(self, row: int) -> None:
        if 0 <= row < len(self.session.plan.unfreeze):
            self.session.edit(lambda plan: plan.unfreeze.pop(row))


class GroupsPanel(QWidget):
    problem = Signal(str)

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session

        self.default_lr = ScientificSpinBox(session.plan.train.lr)
        self.default_wd = ScientificSpinBox(session.plan.train.weight_decay, allow_zero=True)
        defaults = QFormLayout()
        defaults.addRow("Default learning rate", self.default_lr)
        defaults.addRow("Default weight decay", self.default_wd)

        self.groups_model = QtGroupsModel(session, self)
        self.table = QTableView()
        self.table.setModel(self.groups_model)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.cell_editor = ScientificDelegate({QtGroupsModel.WD}, self.table)
        self.table.setItemDelegateForColumn(QtGroupsModel.LR, self.cell_editor)
        self.table.setItemDelegateForColumn(QtGroupsModel.WD, self.cell_editor)
        self.table.setEditTriggers(QTableView.EditTrigger.DoubleClicked | QTableView.EditTrigger.EditKeyPressed
                                   | QTableView.EditTrigger.SelectedClicked)

        self.discriminative = QGroupBox("Discriminative learning rates")
        self.discriminative.setCheckable(True)
        self.discriminative.setChecked(False)
        self.discriminative.setToolTip("The last group trains at the base LR; each earlier group at the next one's "
                                       "LR times the factor")
        self.base_lr = ScientificSpinBox(1e-3)
        self.factor = ScientificSpinBox(0.5, maximum=1.0)
        disc = QFormLayout(self.discriminative)
        disc.addRow("Base LR (last group)", self.base_lr)
        disc.addRow("Factor per group", self.factor)

        self.schedule_model = QtUnfreezeModel(session, self)
        self.schedule = QTableView()
        self.schedule.setModel(self.schedule_model)
        self.schedule.verticalHeader().hide()
        self.schedule.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.schedule.horizontalHeader().setSectionResizeMode(QtUnfreezeModel.GROUPS, QHeaderView.ResizeMode.Stretch)
        self.schedule.setMinimumHeight(90)
        self.group_picker = GroupPickerDelegate(self.schedule_model.group_names, self.schedule)
        self.schedule.setItemDelegateForColumn(QtUnfreezeModel.GROUPS, self.group_picker)
        self.add_step = QPushButton("Add step")
        self.remove_step = QPushButton("Remove step")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_step)
        buttons.addWidget(self.remove_step)
        buttons.addStretch(1)
        schedule_box = QGroupBox("Gradual unfreezing (epoch → groups)")
        schedule_layout = QVBoxLayout(schedule_box)
        hint = QLabel("At the start of each epoch (0-based) the listed groups become trainable. An LR on a step "
                      "sets every group's LR from then on (LP-FT: the probed head slows down with the body).")
        hint.setWordWrap(True)
        muted(hint)
        schedule_layout.addWidget(hint)
        schedule_layout.addWidget(self.schedule)
        schedule_layout.addLayout(buttons)

        self.setMinimumWidth(300)
        layout = QVBoxLayout(self)
        layout.addLayout(defaults)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.discriminative)
        layout.addWidget(schedule_box)

        self.default_lr.valueChanged.connect(lambda v: self._set_train("lr", v))
        self.default_wd.valueChanged.connect(lambda v: self._set_train("weight_decay", v))
        self.discriminative.toggled.connect(lambda on: on and self.apply_discriminative())
        self.base_lr.valueChanged.connect(lambda *_: self.discriminative.isChecked() and self.apply_discriminative())
        self.factor.valueChanged.connect(lambda *_: self.discriminative.isChecked() and self.apply_discriminative())
        for box in (self.default_lr, self.default_wd, self.base_lr, self.factor):
            box.rejected.connect(lambda message: self.problem.emit(f"Not applied: {message}"))
        self.cell_editor.rejected.connect(lambda message: self.problem.emit(f"Not applied: {message}"))
        self.add_step.clicked.connect(self._add_step)
        self.remove_step.clicked.connect(lambda: self.schedule_model.remove_step(self.schedule.currentIndex().row()))
        self.schedule_model.problem.connect(self.problem)
        session.workspaceChanged.connect(self.sync_from_plan)
        session.resolutionChanged.connect(self.sync_from_plan)
        self.sync_from_plan()

    def sync_from_plan(self) -> None:
        """Show the plan: default LR/WD, and the discriminative box as the plan's group LRs imply it."""
        plan = self.session.plan
        train = plan.train
        ws = self.session.workspace
        groups = plan.groups or (ws.default_groups() if ws is not None else [])
        lrs = [g.lr if g.lr is not None else train.lr for g in groups]
        ratio = _common_ratio(lrs)
        base = lrs[-1] if lrs else train.lr
        values = [(self.default_lr, train.lr), (self.default_wd, train.weight_decay), (self.base_lr, base)]
        if ratio is not None and abs(self.factor.value() - ratio) > 1e-9 * ratio:  # keep the typed digits
            values.append((self.factor, ratio))
        for box, value in values:
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self.discriminative.blockSignals(True)
        self.discriminative.setChecked(ratio is not None)
        self.discriminative.blockSignals(False)
        loaded = self.session.workspace is not None
        for w in (self.discriminative, self.add_step, self.remove_step, self.table, self.schedule):
            w.setEnabled(loaded)

    def _set_train(self, key: str, value: float) -> None:
        if getattr(self.session.plan.train, key) != value:
            self.session.edit(lambda plan: setattr(plan.train, key, float(value)))

    def apply_discriminative(self) -> None:
        ws = self.session.workspace
        if ws is None:
            return
        base, factor = self.base_lr.value(), self.factor.value()

        def change(plan: FinetunePlan) -> None:
            plan.groups = discriminative(explicit_groups(plan, ws.default_groups()), base, factor)

        error = self.session.edit(change)
        if error:
            self.problem.emit(error)

    def _add_step(self) -> None:
        error = self.schedule_model.add_step()
        if error:
            self.problem.emit(error)


def _common_ratio(lrs: list[float]) -> float | None:
    """The factor f < 1 when every group's LR is f times the next one's (a discriminative plan), else None."""
    if len(lrs) < 2 or any(lr <= 0 for lr in lrs):
        return None
    ratios = [a / b for a, b in zip(lrs, lrs[1:])]
    first = ratios[0]
    if first >= 1 or any(abs(r - first) > 1e-9 * first for r in ratios):
        return None
    return float(f"{first:.12g}")
