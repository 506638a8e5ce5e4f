"""The Layers tab: filter box, freezing presets, BatchNorm policy, the layer tree and its context menu."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ui.qt_layer_tree import NAME, PATH_ROLE, TYPE, QtLayerTreeModel
from ui.selector_bar import SelectorBar
from ui.session import WorkbenchSession
from workbench import freezing
from workbench.groups import assign_to_group
from workbench.plan import FinetunePlan

BN_CHOICES = (("freeze", "BatchNorm: freeze statistics in frozen layers"),
              ("train", "BatchNorm: keep training everywhere"),
              ("eval", "BatchNorm: inference mode everywhere (statistics never move)"))


class LayerFilterProxy(QSortFilterProxyModel):
    """Matches the filter text against a row's module path and type; ancestors of matches stay visible."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.setAutoAcceptChildRows(True)
        self._needle = ""

    def set_text(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10; invalidateRowsFilter is deprecated there
            self.beginFilterChange()
            self._needle = text.strip().lower()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._needle = text.strip().lower()
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        needle = self._needle
        if not needle:
            return True
        model = self.sourceModel()
        index = model.index(source_row, NAME, source_parent)
        path = str(model.data(index, PATH_ROLE) or "")
        type_name = str(model.data(model.index(source_row, TYPE, source_parent)) or "")
        return needle in path.lower() or needle in type_name.lower()


def describe_model(ws: Any) -> str:
    """One rich-text paragraph: what was loaded, how, and anything the source wants the user to know."""
    spec, backbone = ws.backbone.spec, ws.backbone
    c, h, w = spec.input_size
    parts = [f"<b>{html.escape(spec.architecture)}</b> ({html.escape(backbone.source)}, "
             f"{html.escape(backbone.weights)}) · "
             f"{ws.tree.total_params:,} parameters · {len(ws.tree.nodes):,} modules · input {c}×{h}×{w} · "
             f"{spec.num_classes} outputs · stages from {html.escape(ws.tree.stage_source or 'n/a')}"]
    report = backbone.report or {}
    if backbone.source == "onnx" and report:
        facts = [f"{key.replace('_', ' ')} {report[key]}" for key in
                 ("opset", "trainable_tensors", "trainable_params", "parity_max_abs_diff") if key in report]
        parts.append("ONNX import: " + html.escape(", ".join(facts)))
    parts += [f"<span style='color:#9a6700'>ℹ {html.escape(n)}</span>" for n in backbone.notices]
    return "<br>".join(parts)


class TreePanel(QWidget):
    problem = Signal(str)  # the core rejected an edit: the window shows the message

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model: QtLayerTreeModel | None = None
        self._locked = False

        self.filter = QLineEdit(placeholderText="Filter layers by path or type (e.g. layer3, BatchNorm)")
        self.filter.setClearButtonEnabled(True)
        self.linear_probe = QPushButton("Linear probe")
        self.linear_probe.setToolTip("Freeze everything except the classifier")
        self.stages = QSpinBox(minimum=0, maximum=0)
        self.stages.setPrefix("first ")
        self.stages.setSuffix(" stages")
        self.freeze_stages = QPushButton("Freeze")
        self.freeze_stages.setToolTip("Freeze the stem and the first N stages")
        self.full_finetune = QPushButton("Full fine-tune")
        self.full_finetune.setToolTip("Unfreeze everything")
        self.batchnorm = QComboBox()
        # The full labels are long; let the combo shrink with the window (they stay in the popup).
        self.batchnorm.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.batchnorm.setMinimumContentsLength(16)
        for key, label in BN_CHOICES:
            self.batchnorm.addItem(label, key)
        self.batchnorm.setToolTip("Frozen BatchNorm layers keep updating their running statistics unless they are "
                                  "put in eval mode; choose what frozen layers do")

        presets = QHBoxLayout()
        presets.addWidget(QLabel("Presets:"))
        presets.addWidget(self.linear_probe)
        presets.addWidget(self.freeze_stages)
        presets.addWidget(self.stages)
        presets.addWidget(self.full_finetune)
        presets.addStretch(1)
        presets.addWidget(self.batchnorm)

        self.selector_bar = SelectorBar(session)
        self.selector_bar.problem.connect(self.problem)

        self.proxy = LayerFilterProxy(self)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
        self.empty = QLabel("No model loaded. Pick a timm model on the left, open an ONNX file or a checkpoint, "
                            "or drop one onto the window.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setObjectName("muted")

        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setObjectName("modelInfo")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addWidget(self.filter)
        layout.addLayout(presets)
        layout.addWidget(self.selector_bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.empty, 1)

        self.filter.textChanged.connect(self._filter_changed)
        self.linear_probe.clicked.connect(lambda: self._edit(lambda p, t: freezing.linear_probe(p, t), "Linear probe"))
        self.freeze_stages.clicked.connect(
            lambda: self._edit(lambda p, t: freezing.freeze_first_stages(p, t, self.stages.value()),
                               f"Freeze first {self.stages.value()} stages"))
        self.full_finetune.clicked.connect(lambda: self._edit(lambda p, t: freezing.full_finetune(p), "Full fine-tune"))
        self.batchnorm.currentIndexChanged.connect(self._batchnorm_changed)
        self.view.customContextMenuRequested.connect(self._context_menu)
        session.workspaceChanged.connect(self._workspace_changed)
        session.resolutionChanged.connect(self._resolution_changed)
        session.shapesChanged.connect(self._shapes_changed)
        self._workspace_changed()

    def _workspace_changed(self) -> None:
        ws = self.session.workspace
        loaded = ws is not None and self.session.resolution is not None
        for w in (self.filter, self.linear_probe, self.stages, self.freeze_stages, self.full_finetune, self.batchnorm):
            w.setEnabled(loaded)
        self.selector_bar.set_locked(self._locked)
        self.view.setVisible(loaded)
        self.empty.setVisible(not loaded)
        self.info.setVisible(loaded)
        if not loaded:
            self.proxy.setSourceModel(None)  # type: ignore[arg-type]
            self.model = None
            return
        assert ws is not None and self.session.resolution is not None
        old = self.model
        self.model = QtLayerTreeModel(ws.tree, self.session.resolution, self.session.set_frozen, self)
        self.model.editFailed.connect(self.problem)
        self.proxy.setSourceModel(self.model)
        if old is not None:
            old.deleteLater()
        body = [name for name, _ in ws.tree.stages if name != "head"]
        self.stages.setMaximum(max(0, len(body) - 1))
        self.stages.setValue(min(max(1, self.stages.value()), self.stages.maximum()))
        self.linear_probe.setEnabled(bool(ws.tree.classifier_paths))
        self.info.setText(describe_model(ws))
        self._sync_batchnorm()
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        self.view.expandToDepth(0)
        for column in range(1, self.model.columnCount()):
            self.view.resizeColumnToContents(column)

    def set_locked(self, locked: bool) -> None:
        """While training: the tree stays browsable but no box, preset or menu edits the plan."""
        self._locked = locked
        loaded = self.model is not None
        for w in (self.linear_probe, self.stages, self.freeze_stages, self.full_finetune, self.batchnorm):
            w.setEnabled(loaded and not locked)
        self.selector_bar.set_locked(locked)
        if loaded:
            self.linear_probe.setEnabled(not locked and bool(self.session.workspace.tree.classifier_paths))
            self.model.set_read_only(locked)

    def _resolution_changed(self) -> None:
        if self.model is not None and self.session.resolution is not None:
            self.model.set_resolution(self.session.resolution)
        self._sync_batchnorm()

    def _shapes_changed(self) -> None:
        ws = self.session.workspace
        if self.model is not None and ws is not None:
            self.model.shapes_changed()
            self.info.setText(describe_model(ws))

    def _sync_batchnorm(self) -> None:
        index = self.batchnorm.findData(self.session.plan.freeze.batchnorm)
        if index >= 0 and index != self.batchnorm.currentIndex():
            self.batchnorm.blockSignals(True)
            self.batchnorm.setCurrentIndex(index)
            self.batchnorm.blockSignals(False)

    def _filter_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        if text:
            self.view.expandAll()

    def _batchnorm_changed(self) -> None:
        policy = self.batchnorm.currentData()
        if policy != self.session.plan.freeze.batchnorm:
            self._edit(lambda plan, _tree: setattr(plan.freeze, "batchnorm", policy), f"BatchNorm policy {policy}")

    def _edit(self, change: Callable[[FinetunePlan, object], object], text: str = "Edit plan") -> None:
        ws = self.session.workspace
        if ws is None:
            return
        error = self.session.edit(lambda plan: change(plan, ws.tree), text)
        if error:
            self.problem.emit(error)

    def path_at(self, proxy_index: QModelIndex) -> str | None:
        if not proxy_index.isValid():
            return None
        return str(self.proxy.data(proxy_index.siblingAtColumn(NAME), PATH_ROLE))

    def build_context_menu(self, path: str) -> QMenu:
        ws = self.session.workspace
        assert ws is not None
        node = ws.tree.node(path)
        label = path or "the whole model"
        menu = QMenu(self)
        menu.addAction(f"Freeze everything up to {label}",
                       lambda: self._edit(lambda p, t: freezing.freeze_up_to(p, t, path)))
        menu.addAction(f"Freeze {label}", lambda: self._edit(lambda p, t: freezing.set_frozen(p, t, path, True)))
        menu.addAction(f"Unfreeze {label}", lambda: self._edit(lambda p, t: freezing.set_frozen(p, t, path, False)))
        menu.addAction(f"Freeze all {node.type_name} layers",
                       lambda: self._edit(lambda p, t: freezing.freeze_type(p, t, node.type_name)))
        groups = menu.addMenu("Assign to group")
        names = [g.name for g in (ws.plan.groups or ws.default_groups())]
        for name in names:
            groups.addAction(name, lambda n=name: self.assign(path, n))
        groups.addSeparator()
        groups.addAction("New group…", lambda: self._assign_new(path))
        groups.setEnabled(node.param_count > 0)
        cut = menu.addAction("Cut here and add a new head…", lambda: self.cut_here(path))
        cut.setEnabled(bool(path) and path != "head" and not path.startswith("head."))
        return menu

    def cut_here(self, path: str) -> None:
        """Open the head dialog for ``path``; on OK rebuild the model from the plan with its new [head]."""
        from PySide6.QtWidgets import QMessageBox

        from ui.head_dialog import HeadDialog
        from workbench.errors import WorkbenchError
        from workbench.workspace import Workspace

        ws = self.session.workspace
        assert ws is not None
        spec = ws.backbone.spec
        self.head_dialog = HeadDialog(ws.backbone.module, path, spec.num_classes, spec.input_size, self)
        if self.head_dialog.exec() != HeadDialog.DialogCode.Accepted or self.head_dialog.spec is None:
            return
        plan = ws.plan.copy()
        plan.head = self.head_dialog.spec
        try:
            new = Workspace.from_plan(plan, ws.project_path)
            self.session.set_workspace(new, ws.project_path)
        except WorkbenchError as exc:
            QMessageBox.warning(self, "Cannot cut here", str(exc))
            return
        self.session.set_dirty(True)

    def assign(self, path: str, group: str) -> None:
        ws = self.session.workspace
        if ws is not None:
            self._edit(lambda plan, _t: assign_to_group(plan, ws.tree, path, group, ws.default_groups()))

    def _assign_new(self, path: str) -> None:
        name, ok = QInputDialog.getText(self, "New parameter group", f"Name of the group for {path or 'the model'}:")
        if ok and name.strip():
            self.assign(path, name.strip())

    def _context_menu(self, pos: QPoint) -> None:
        path = self.path_at(self.view.indexAt(pos))
        if path is None or self.session.workspace is None or self._locked:
            return
        self.build_context_menu(path).exec(self.view.viewport().mapToGlobal(pos))
