"""The Layers tab: filter box, freezing presets, BatchNorm policy, the layer tree and its context menu."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
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
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from workbench import freezing
from workbench.groups import assign_to_group
from workbench.layer_tree import LayerTree
from workbench.plan import FinetunePlan
from workbench_ui.look import muted
from workbench_ui.model_description import describe_model
from workbench_ui.qt_layer_tree import GROUP, HEADERS, NAME, PARAMS, PATH_ROLE, TYPE, QtLayerTreeModel, short_type_name
from workbench_ui.selector_bar import SelectorBar
from workbench_ui.session import WorkbenchSession

BN_CHOICES = (("freeze", "BatchNorm: freeze stats of frozen layers",
               "BatchNorm in frozen layers keeps its statistics; in trainable layers they keep training"),
              ("train", "BatchNorm: train stats everywhere",
               "Every BatchNorm layer updates its running statistics, frozen layers included"),
              ("eval", "BatchNorm: inference mode everywhere",
               "Every BatchNorm layer normalises with its stored statistics, which never move"))


def filter_visible(tree: LayerTree, needle: str) -> list[bool]:
    """Which rows a filter shows: nodes whose path or type contains ``needle`` (case-insensitive), their
    ancestors (to reach them) and their descendants (what they hold)."""
    needle = needle.strip().lower()
    if not needle:
        return [True] * len(tree.nodes)
    visible = [False] * len(tree.nodes)
    for node in tree.nodes:
        if needle in node.path.lower() or needle in node.type_name.lower():
            for i in range(node.index, node.subtree_end):
                visible[i] = True
            parent = node.parent
            while parent is not None and not visible[parent]:
                visible[parent] = True
                parent = tree.nodes[parent].parent
    return visible


def lora_rank_limit(ws: object, path: str) -> int:
    """The largest LoRA rank the module at ``path`` takes; 0 when peft cannot adapt it (or it is grouped)."""
    from workbench.adapters import adaptable_rank_limit

    return adaptable_rank_limit(ws.backbone.module.get_submodule(path)) if path else 0  # type: ignore[attr-defined]


class TreePanel(QWidget):
    problem = Signal(str)  # the core rejected an edit: the window shows the message
    notice = Signal(str)  # an edit changed more than was clicked (a cut rewrote the plan): the window says what

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model: QtLayerTreeModel | None = None
        self._locked = False
        self.cut_notices: list[str] = []  # what the last cut rewrote or dropped in the plan
        self._hidden: list[bool] = []  # per node: hidden by the filter

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
        # Short labels, shown whole (the stretch before the combo gives way first); the details are tooltips.
        self.batchnorm.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        for key, label, detail in BN_CHOICES:
            self.batchnorm.addItem(label, key)
            self.batchnorm.setItemData(self.batchnorm.count() - 1, detail, Qt.ItemDataRole.ToolTipRole)
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

        # No QSortFilterProxyModel in between: it made every tick on a big tree take seconds. The filter
        # hides rows in the view instead (filter_visible).
        self.view = QTreeView()
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.setSelectionBehavior(QTreeView.SelectionBehavior.SelectRows)
        self.empty = QLabel("No model loaded. Pick a model on the left, open a model file, or drop one onto the "
                            "window.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        muted(self.empty)

        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setObjectName("modelInfo")
        self.info.setContentsMargins(2, 4, 2, 4)
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
        session.weightsChanged.connect(self._weights_changed)
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
            self.view.setModel(None)  # type: ignore[arg-type]
            if self.model is not None:
                self.model.deleteLater()
            self.model = None
            return
        assert ws is not None and self.session.resolution is not None
        old = self.model
        self.model = QtLayerTreeModel(ws.tree, self.session.resolution, self.session.set_frozen, self)
        self.model.editFailed.connect(self.problem)
        self.model.set_source_names(dict((ws.backbone.report or {}).get("source_names") or {}))
        self.view.setModel(self.model)
        if old is not None:
            old.deleteLater()
        self._hidden = [False] * len(ws.tree.nodes)
        if self.filter.text().strip():
            self._filter_changed(self.filter.text())
        body = [name for name, _ in ws.tree.stages if name != "head"]
        self.stages.setMaximum(max(0, len(body) - 1))
        self.stages.setValue(min(max(1, self.stages.value()), self.stages.maximum()))
        self.linear_probe.setEnabled(bool(ws.tree.classifier_paths))
        self.info.setText(describe_model(ws, self._weights()))
        self._sync_batchnorm()
        header = self.view.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # every column can be dragged wider
        self.view.expandToDepth(0)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Widths that fit the content of every row (expanded or not), the layer column capped at 45% of the view."""
        if self.model is None:
            return
        tree, fm = self.model.tree, self.view.fontMetrics()
        indent = self.view.indentation()
        check = self.view.style().pixelMetric(QStyle.PixelMetric.PM_IndicatorWidth) + 8
        names = max(indent * (n.depth + 1) + check + fm.horizontalAdvance(n.name) for n in tree.nodes) + 16
        cap = max(220, int(0.45 * max(self.view.viewport().width(), 900)))
        self.view.setColumnWidth(NAME, min(names, cap))
        types = max(fm.horizontalAdvance(short_type_name(n.type_name)) for n in tree.nodes) + 24
        self.view.setColumnWidth(TYPE, max(types, fm.horizontalAdvance(HEADERS[TYPE]) + 24))
        for column in range(PARAMS, self.model.columnCount() - 1):
            self.view.resizeColumnToContents(column)
        # Rows below the first level are collapsed now; their group names must fit when they are opened.
        groups = [g.name for g in self.model.resolution.groups] + [HEADERS[GROUP]]
        self.view.setColumnWidth(GROUP, max(self.view.columnWidth(GROUP),
                                            max(fm.horizontalAdvance(name) for name in groups) + 24))

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
            self.info.setText(describe_model(ws, self._weights()))

    def _weights(self) -> str:
        """The session's words for the weights once they are a run's (the loaded source's words otherwise)."""
        return "" if self.session.untrained else self.session.weights_label

    def _weights_changed(self) -> None:
        ws = self.session.workspace
        if ws is not None:
            self.info.setText(describe_model(ws, self._weights()))

    def _sync_batchnorm(self) -> None:
        index = self.batchnorm.findData(self.session.plan.freeze.batchnorm)
        if index >= 0 and index != self.batchnorm.currentIndex():
            self.batchnorm.blockSignals(True)
            self.batchnorm.setCurrentIndex(index)
            self.batchnorm.blockSignals(False)

    def _filter_changed(self, text: str) -> None:
        if self.model is None:
            return
        visible = filter_visible(self.model.tree, text)
        nodes = self.model.tree.nodes
        for node, shown in zip(nodes, visible):
            if node.parent is not None and self._hidden[node.index] == shown:
                self._hidden[node.index] = not shown
                self.view.setRowHidden(self.model.index_of(node.index).row(),
                                       self.model.index_of(node.parent), not shown)
        if text.strip():
            self.view.expandAll()

    def is_shown(self, path: str) -> bool:
        """Whether the filter shows this module's row (its ancestors may still be collapsed)."""
        return self.model is not None and not self._hidden[self.model.tree.node(path).index]

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

    def path_at(self, index: QModelIndex) -> str | None:
        if not index.isValid() or self.model is None:
            return None
        return str(self.model.data(index.siblingAtColumn(NAME), PATH_ROLE))

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
        lora = menu.addAction("Adapt with LoRA…", lambda: self.adapt_with_lora(path))
        inside = any(path == a or path.startswith(a + ".") for a in ws.tree.adapter_paths)
        lora.setEnabled(not inside and lora_rank_limit(ws, path) > 0)
        cut = menu.addAction("Cut here and add a new head…", lambda: self.cut_here(path))
        cut.setEnabled(bool(path) and path != "head" and not path.startswith("head."))
        return menu

    def adapt_with_lora(self, path: str) -> None:
        """Ask rank and alpha, then rebuild the model with a LoRA adapter on ``path`` (one undoable step)."""
        from PySide6.QtWidgets import QMessageBox

        from workbench.errors import WorkbenchError
        from workbench.workspace import with_adapters_on
        from workbench_ui.lora_dialog import LoraDialog

        ws = self.session.workspace
        assert ws is not None
        current = ws.plan.adapters
        self.lora_dialog = LoraDialog(path, lora_rank_limit(ws, path), current.rank if current else 8,
                                      current.alpha if current else None, self)
        if self.lora_dialog.exec() != LoraDialog.DialogCode.Accepted:
            return
        try:
            new = with_adapters_on(ws, [path], self.lora_dialog.rank.value(), self.lora_dialog.alpha.value())
        except WorkbenchError as exc:
            QMessageBox.warning(self, "Cannot adapt this module", str(exc))
            return
        self.session.swap_workspace(new, f"Adapt {path} with LoRA")

    def cut_here(self, path: str) -> None:
        """Open the head dialog for ``path``; on OK rebuild the model from the plan with its new [head].

        The rebuilt model starts from the weights shown (an opened run's, not the plan's initial ones);
        the plan's references to the modules cut off are rewritten or dropped (the log says which);
        Ctrl+Z brings back the model before the cut.
        """
        from PySide6.QtWidgets import QMessageBox

        from workbench.cut_plan import rewrite_for_cut
        from workbench.edit_session import without_pretrained
        from workbench.errors import WorkbenchError
        from workbench.workspace import Workspace
        from workbench_ui.head_dialog import HeadDialog

        ws = self.session.workspace
        assert ws is not None
        spec = ws.backbone.spec
        self.head_dialog = HeadDialog(ws.backbone.module, path, spec.num_classes, spec.input_size, self)
        if self.head_dialog.exec() != HeadDialog.DialogCode.Accepted or self.head_dialog.spec is None:
            return
        plan = ws.plan.copy()
        plan.head = self.head_dialog.spec
        start = self.session.start_weights()
        try:
            if start is None:
                new = Workspace.from_plan(plan, ws.project_path)
            else:  # the weights shown (an opened run's), not the plan's initial ones; the new head stays new
                new = Workspace.from_plan(without_pretrained(plan), ws.project_path)
                new.take_weights(start, keep_new="head")
                new.plan.model.pretrained = plan.model.pretrained
            self.cut_notices = rewrite_for_cut(new.plan, new.tree, spec.classifier)
            label = None if start is None else f"{self.session.weights_label}; cut at {path}, new head untrained"
            self.session.swap_workspace(new, f"Cut at {path} and add a new head", label)
        except WorkbenchError as exc:
            QMessageBox.warning(self, "Cannot cut here", str(exc))
            return
        if self.cut_notices:
            self.notice.emit(f"Cut at {path}: " + "; ".join(self.cut_notices))

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
