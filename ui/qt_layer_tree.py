"""QtLayerTreeModel: a QAbstractItemModel adapting the pure-Python LayerTree and its Resolution.

The LayerTree never changes while a model is loaded; only the Resolution does. A tick
edits the plan through ``workbench.freezing.set_frozen``, the workspace re-resolves,
and only the rows whose displayed values changed get ``dataChanged``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from workbench.errors import WorkbenchError
from workbench.layer_tree import LayerTree
from workbench.resolve import FROZEN, PARTIAL, Resolution

NAME, TYPE, PARAMS, TRAINABLE, SHAPE, GROUP, LR, DRIFT = range(8)
HEADERS = ("Layer", "Type", "Parameters", "Trainable", "Output shape", "Group", "Learning rate", "Drift")
HEADER_TIPS = (
    "Ticked layers train; unticked layers are frozen. A partly ticked box has both.",
    "The module's class",
    "Parameters in this module and everything under it",
    "Trainable parameters under this module",
    "Output shape for one image at the model's input size",
    "Optimizer parameter group (when every parameter under the module is in one group)",
    "Learning rate of that group",
    "After a run: relative change ‖W′ − W‖ / ‖W‖ of the parameters under this module (0 = bit-identical)",
)
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
STATE_ROLE = Qt.ItemDataRole.UserRole + 2

_CHECK = {"trainable": Qt.CheckState.Checked, FROZEN: Qt.CheckState.Unchecked, PARTIAL: Qt.CheckState.PartiallyChecked}

ModelIndex = QModelIndex | QPersistentModelIndex


def format_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} M"
    if value >= 10_000:
        return f"{value / 1e3:.1f} k"
    return f"{value:,}"


def format_lr(value: float) -> str:
    """Three significant digits everywhere (0.00115, 2.52e-05), so a column of LRs compares at a glance."""
    return f"{value:.3g}"


class QtLayerTreeModel(QAbstractItemModel):
    """Rows are LayerTree nodes (pre-order, root first); the internal id of an index is the node index."""

    editFailed = Signal(str)  # the core's message when it rejects a tick

    def __init__(self, tree: LayerTree, resolution: Resolution,
                 set_frozen: Callable[[str, bool], Resolution], parent: Any = None) -> None:
        """``set_frozen(path, frozen)`` edits the plan and returns the new Resolution."""
        super().__init__(parent)
        self._tree = tree
        self._resolution = resolution
        self._set_frozen = set_frozen
        self._row = [0] * len(tree.nodes)
        for node in tree.nodes:
            for row, child in enumerate(node.children):
                self._row[child] = row
        self._group_cache: dict[int, str | None] = {}
        self._bn_eval = set(resolution.bn_eval)
        self._read_only = False
        self._drift: list[float | None] | None = None  # per node, set after a run
        self._italic = QFont()
        self._italic.setItalic(True)

    # -- structure -------------------------------------------------------------------------
    @property
    def tree(self) -> LayerTree:
        return self._tree

    @property
    def resolution(self) -> Resolution:
        return self._resolution

    def index(self, row: int, column: int, parent: ModelIndex = QModelIndex()) -> QModelIndex:
        if column < 0 or column >= len(HEADERS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0) if row == 0 else QModelIndex()
        if parent.column() != 0:
            return QModelIndex()
        children = self._tree.nodes[parent.internalId()].children
        if row >= len(children):
            return QModelIndex()
        return self.createIndex(row, column, children[row])

    def parent(self, child: ModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not child.isValid():
            return QModelIndex()
        parent = self._tree.nodes[child.internalId()].parent
        if parent is None:
            return QModelIndex()
        return self.createIndex(self._row[parent], 0, parent)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        if not parent.isValid():
            return 1 if self._tree.nodes else 0
        if parent.column() != 0:
            return 0
        return len(self._tree.nodes[parent.internalId()].children)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return len(HEADERS)

    def hasChildren(self, parent: ModelIndex = QModelIndex()) -> bool:
        return self.rowCount(parent) > 0

    def index_of(self, node_index: int, column: int = 0) -> QModelIndex:
        node = self._tree.nodes[node_index]
        row = 0 if node.parent is None else self._row[node_index]
        return self.createIndex(row, column, node_index)

    def index_of_path(self, path: str, column: int = 0) -> QModelIndex:
        return self.index_of(self._tree.node(path).index, column)

    # -- data ------------------------------------------------------------------------------
    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS[section]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        # Parameter-free modules (ReLU, pooling) have nothing to freeze: no box, no state.
        if index.column() == NAME and not self._read_only and self._tree.nodes[index.internalId()].param_count:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i = index.internalId()
        node = self._tree.nodes[i]
        res = self._resolution
        col = index.column()
        state = res.node_state[i] if node.param_count else "stateless"
        if role == Qt.ItemDataRole.DisplayRole:
            if col == NAME:
                return node.name
            if col == TYPE:
                return node.type_name
            if col == PARAMS:
                return format_count(node.param_count) if node.param_count else "–"
            if col == TRAINABLE:
                if not node.param_count:
                    return "–"
                if state == FROZEN:
                    return "frozen"
                return format_count(res.node_trainable[i])
            if col == SHAPE:
                return " × ".join(str(d) for d in node.output_shape[1:]) if node.output_shape else ""
            if col == GROUP:
                return self._group(i) or ""
            if col == LR:
                group = self._group_obj(i)
                if group is None:
                    return ""
                return format_lr(group.lr) if state != FROZEN else f"({format_lr(group.lr)})"
            if col == DRIFT:
                value = self._drift[i] if self._drift is not None else None
                return "" if value is None else ("0" if value == 0.0 else f"{value:.3g}")
            return None
        if role == Qt.ItemDataRole.CheckStateRole and col == NAME:
            return _CHECK.get(state)
        if role == Qt.ItemDataRole.ForegroundRole and state == FROZEN:
            return QBrush(QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        if role == Qt.ItemDataRole.BackgroundRole and state == FROZEN:
            return QBrush(QColor(128, 160, 200, 28))
        if role == Qt.ItemDataRole.FontRole and state == FROZEN:
            return self._italic
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (PARAMS, TRAINABLE, LR, DRIFT):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(i)
        if role == PATH_ROLE:
            return node.path
        if role == STATE_ROLE:
            return state
        return None

    def _tooltip(self, i: int) -> str:
        node = self._tree.nodes[i]
        res = self._resolution
        lines = [node.path or "(whole model)", f"{node.type_name}: {node.param_count:,} parameters, "
                 f"{res.node_trainable[i]:,} trainable ({res.node_state[i]})"]
        if node.is_batchnorm:
            lines.append("BatchNorm statistics frozen (eval mode)" if i in self._bn_eval else
                         "BatchNorm statistics update during training")
        return "\n".join(lines)

    def _group(self, i: int) -> str | None:
        if i not in self._group_cache:
            self._group_cache[i] = self._resolution.node_group(i)
        return self._group_cache[i]

    def _group_obj(self, i: int) -> Any:
        name = self._group(i)
        if name is None:
            return None
        return next((g for g in self._resolution.groups if g.name == name), None)

    # -- drift -----------------------------------------------------------------------------
    def set_drift(self, drift: list[float | None] | None) -> None:
        """Per-node drift after a run (``workbench.drift.tree_drift``), or None to clear the column."""
        self._drift = drift
        self._emit_rows_changed(range(len(self._tree.nodes)))

    def shapes_changed(self) -> None:
        """The tree's output shapes were recomputed (a new input size)."""
        self._emit_rows_changed(range(len(self._tree.nodes)))

    @property
    def drift(self) -> list[float | None] | None:
        return self._drift

    # -- edits -----------------------------------------------------------------------------
    def set_read_only(self, read_only: bool) -> None:
        self._read_only = read_only

    def setData(self, index: ModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if (not index.isValid() or index.column() != NAME or role != Qt.ItemDataRole.CheckStateRole
                or self._read_only):
            return False
        checked = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
        # A click on a partial box makes the whole subtree trainable (Qt cycles it to Checked).
        frozen = checked == Qt.CheckState.Unchecked
        path = self._tree.nodes[index.internalId()].path
        try:
            resolution = self._set_frozen(path, frozen)
        except WorkbenchError as exc:
            self.editFailed.emit(str(exc))
            return False
        self.set_resolution(resolution)
        return True

    def set_resolution(self, resolution: Resolution) -> None:
        """Swap in a new Resolution and emit dataChanged for exactly the rows that look different."""
        if resolution is self._resolution:
            return
        old, self._resolution = self._resolution, resolution
        old_groups = [(g.name, g.lr) for g in old.groups]
        new_groups = [(g.name, g.lr) for g in resolution.groups]
        groups_changed = (old_groups != new_groups or old.param_claim != resolution.param_claim
                          or old.bn_eval != resolution.bn_eval)
        self._group_cache = {}
        self._bn_eval = set(resolution.bn_eval)
        if groups_changed:
            changed = range(len(self._tree.nodes))
        else:
            changed = [i for i, (a, b, c, d) in enumerate(zip(old.node_state, resolution.node_state,
                                                           old.node_trainable, resolution.node_trainable))
                       if a != b or c != d]
        self._emit_rows_changed(changed)

    def _emit_rows_changed(self, changed: Any) -> None:
        by_parent: dict[int | None, tuple[int, int]] = {}
        nodes = self._tree.nodes
        for i in changed:
            parent = nodes[i].parent
            row = self._row[i] if parent is not None else 0
            lo, hi = by_parent.get(parent, (row, row))
            by_parent[parent] = (min(lo, row), max(hi, row))
        last = len(HEADERS) - 1
        for parent, (lo, hi) in by_parent.items():
            if parent is None:
                top, bottom = self.createIndex(0, 0, 0), self.createIndex(0, last, 0)
            else:
                children = nodes[parent].children
                top = self.createIndex(lo, 0, children[lo])
                bottom = self.createIndex(hi, last, children[hi])
            self.dataChanged.emit(top, bottom)
