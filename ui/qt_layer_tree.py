"""QtLayerTreeModel: a QAbstractItemModel adapting the pure-Python LayerTree and its Resolution.

The LayerTree never changes while a model is loaded; only the Resolution does (and the output
shapes, when the input size changes). A tick edits the plan through
``workbench.freezing.set_frozen``, the workspace re-resolves, and only the rows whose displayed
values changed get ``dataChanged``, one row at a time (see ``_emit_rows_changed`` for why).

Speed matters here: a view calls ``data`` about seven times per visible cell on every repaint,
so each row's texts are computed once per Resolution and ``data`` is a few list lookups.
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
FULL_TYPE_ROLE = Qt.ItemDataRole.UserRole + 3  # the module's class name, never shortened
TYPE_LIMIT = 22  # longer class names (onnx2torch's) are shortened in the Type column
BULK_ROWS = 100  # more changed rows than this: one layoutChanged instead of a dataChanged per row

# Plain ints: ``data`` compares the role it gets against these on every call.
_DISPLAY, _CHECK_ROLE, _TOOLTIP = int(Qt.ItemDataRole.DisplayRole), int(Qt.ItemDataRole.CheckStateRole), \
    int(Qt.ItemDataRole.ToolTipRole)
_FOREGROUND, _BACKGROUND, _FONT = int(Qt.ItemDataRole.ForegroundRole), int(Qt.ItemDataRole.BackgroundRole), \
    int(Qt.ItemDataRole.FontRole)
_ALIGN, _PATH, _STATE, _FULL_TYPE = int(Qt.ItemDataRole.TextAlignmentRole), int(PATH_ROLE), int(STATE_ROLE), \
    int(FULL_TYPE_ROLE)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_RIGHT_COLUMNS = frozenset((PARAMS, TRAINABLE, LR, DRIFT))

_CHECK = {"trainable": Qt.CheckState.Checked, FROZEN: Qt.CheckState.Unchecked, PARTIAL: Qt.CheckState.PartiallyChecked}

ModelIndex = QModelIndex | QPersistentModelIndex


def format_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} M"
    if value >= 10_000:
        return f"{value / 1e3:.1f} k"
    return f"{value:,}"


def short_type_name(type_name: str, limit: int = TYPE_LIMIT) -> str:
    """A class name that fits the Type column: onnx2torch's ``Onnx`` prefix dropped, then cut with "…"."""
    if len(type_name) <= limit:
        return type_name
    if type_name.startswith("Onnx") and len(type_name) > 4:
        type_name = type_name[4:]
    return type_name if len(type_name) <= limit else type_name[:limit - 1] + "…"


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
        self._bn_eval = set(resolution.bn_eval)
        self._read_only = False
        self._drift: list[float | None] | None = None  # per node, set after a run
        self._source_names: dict[str, str] = {}  # module path -> the node's name in the file it came from
        self._italic = QFont()
        self._italic.setItalic(True)
        self._frozen_fg = QBrush(QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        self._frozen_bg = QBrush(QColor(128, 160, 200, 28))
        # Flags combined once (or-ing Python enums costs more than the rest of ``flags``). Leaves say so: the
        # view then skips asking them for children (a Python call per row on every layout).
        plain = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        checkable = plain | Qt.ItemFlag.ItemIsUserCheckable
        leaf = Qt.ItemFlag.ItemNeverHasChildren
        self._flags = {(False, False): plain, (False, True): plain | leaf,
                       (True, False): checkable, (True, True): checkable | leaf}  # (checkable, leaf)
        self._types = [short_type_name(n.type_name) for n in tree.nodes]
        for path in tree.adapter_paths:  # the badge of a module [adapters] wrapped (its adapter rows sit below it)
            self._types[tree.node(path).index] = "LoRA " + self._types[tree.node(path).index]
        self._texts: list[tuple[str, ...] | None] = [None] * len(tree.nodes)  # display texts per row, lazily

    # -- structure -------------------------------------------------------------------------
    @property
    def tree(self) -> LayerTree:
        return self._tree

    @property
    def resolution(self) -> Resolution:
        return self._resolution

    def index(self, row: int, column: int, parent: ModelIndex = QModelIndex()) -> QModelIndex:
        if column < 0 or column > DRIFT or row < 0:
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

    def sibling(self, row: int, column: int, index: ModelIndex) -> QModelIndex:
        # Views ask for each cell of a row this way; the default costs two Python calls (parent + index).
        if not index.isValid() or row != index.row() or not 0 <= column <= DRIFT:
            return super().sibling(row, column, index)
        return self.createIndex(row, column, index.internalId())

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        if not parent.isValid():
            return 1 if self._tree.nodes else 0
        if parent.column() != 0:
            return 0
        return len(self._tree.nodes[parent.internalId()].children)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return len(HEADERS)

    def hasChildren(self, parent: ModelIndex = QModelIndex()) -> bool:
        if not parent.isValid():
            return bool(self._tree.nodes)
        return parent.column() == 0 and bool(self._tree.nodes[parent.internalId()].children)

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
        node = self._tree.nodes[index.internalId()]
        # Parameter-free modules (ReLU, pooling) have nothing to freeze: no box, no state.
        checkable = index.column() == NAME and not self._read_only and node.param_count > 0
        return self._flags[checkable, not node.children]

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i = index.internalId()
        if role == _DISPLAY:
            texts = self._texts[i]
            if texts is None:
                texts = self._texts[i] = self._row_texts(i)
            return texts[index.column()]
        if role == _CHECK_ROLE:
            if index.column() != NAME or not self._tree.nodes[i].param_count:
                return None
            return _CHECK[self._resolution.node_state[i]]
        if role in (_FOREGROUND, _BACKGROUND, _FONT):
            if self._resolution.node_state[i] != FROZEN or not self._tree.nodes[i].param_count:
                return None
            return self._frozen_fg if role == _FOREGROUND else self._frozen_bg if role == _BACKGROUND else self._italic
        if role == _ALIGN:
            return _RIGHT if index.column() in _RIGHT_COLUMNS else None
        if role == _TOOLTIP:
            return self._tooltip(i, index.column())
        if role == _PATH:
            return self._tree.nodes[i].path
        if role == _STATE:
            return self._resolution.node_state[i] if self._tree.nodes[i].param_count else "stateless"
        if role == _FULL_TYPE:
            return self._tree.nodes[i].type_name
        return None

    def _row_texts(self, i: int) -> tuple[str, ...]:
        node, res = self._tree.nodes[i], self._resolution
        state = res.node_state[i] if node.param_count else "stateless"
        params = format_count(node.param_count) if node.param_count else "–"
        if not node.param_count:
            trainable = "–"
        else:
            trainable = "frozen" if state == FROZEN else format_count(res.node_trainable[i])
        shape = " × ".join(str(d) for d in node.output_shape[1:]) if node.output_shape else ""
        group_name = res.node_groups()[i]
        group = self._group_obj(group_name)
        lr = "" if group is None else (format_lr(group.lr) if state != FROZEN else f"({format_lr(group.lr)})")
        value = self._drift[i] if self._drift is not None else None
        drift = "" if value is None else ("0" if value == 0.0 else f"{value:.3g}")
        return (node.name, self._types[i], params, trainable, shape, group_name or "", lr, drift)

    def _tooltip(self, i: int, column: int) -> str:
        node = self._tree.nodes[i]
        res = self._resolution
        lines = [node.path or "(whole model)", f"{node.type_name}: {node.param_count:,} parameters, "
                 f"{res.node_trainable[i]:,} trainable ({res.node_state[i]})"]
        source = self._source_names.get(node.path)
        if source:
            lines.append(f"node in the file: {source}")
        if node.is_batchnorm:
            lines.append("BatchNorm statistics frozen (eval mode)" if i in self._bn_eval else
                         "BatchNorm statistics update during training")
        return "\n".join(lines)

    def _group_obj(self, name: str | None) -> Any:
        if name is None:
            return None
        return next((g for g in self._resolution.groups if g.name == name), None)

    def set_source_names(self, names: dict[str, str]) -> None:
        """Module path -> the name its node has in the file it came from (an ONNX graph), for tooltips."""
        self._source_names = dict(names)

    # -- drift -----------------------------------------------------------------------------
    def set_drift(self, drift: list[float | None] | None) -> None:
        """Per-node drift after a run (``workbench.drift.tree_drift``), or None to clear the column."""
        self._drift = drift
        self._texts = [None] * len(self._tree.nodes)
        self._emit_rows_changed(range(len(self._tree.nodes)))

    @property
    def drift(self) -> list[float | None] | None:
        return self._drift

    def shapes_changed(self) -> None:
        """The tree's output shapes were recomputed (a new input size)."""
        self._texts = [None] * len(self._tree.nodes)
        self._emit_rows_changed(range(len(self._tree.nodes)))

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
        self._bn_eval = set(resolution.bn_eval)
        old_lrs, new_lrs = {g.name: g.lr for g in old.groups}, {g.name: g.lr for g in resolution.groups}
        old_groups, new_groups = old.node_groups(), resolution.node_groups()
        changed = [i for i, (a, b, c, d, e, f) in enumerate(zip(
            old.node_state, resolution.node_state, old.node_trainable, resolution.node_trainable, old_groups,
            new_groups)) if a != b or c != d or e != f or (f is not None and old_lrs.get(e) != new_lrs.get(f))]
        for i in changed:
            self._texts[i] = None
        self._emit_rows_changed(changed)

    def _emit_rows_changed(self, changed: Any) -> None:
        # One signal per row, in tree order. Trap: QTreeView::dataChanged walks every *visible* row between
        # top-left and bottom-right, descendants of expanded rows included, so a range over a parent's
        # children costs as much as the whole subtree below them; over a fully expanded tree of 1,000+
        # modules, ranges per parent made one tick quadratic (seconds). Rows in order keep its search short.
        # Each row still costs the view some twenty calls back into Python (it maps every cell to the screen),
        # so past BULK_ROWS rows the change is announced as two ranges: the root row, then the root's
        # children from first to last. QTreeView walks every expanded row between those two (the whole
        # tree but the last child's descendants) and repaints its viewport, which redraws every visible row
        # from ``data``: nothing it shows is stale. A layoutChanged would do the same with a full relayout
        # on top: measured on efficientnet_b7's 1,105 rows, fully expanded, a click on the whole model
        # took 72 ms that way and 40 ms this way (`benchmarks/ui_responsiveness.py --window-tick`).
        # Views other than a tree view (none in this window) would see only the top two levels change.
        changed = list(changed)
        if len(changed) > BULK_ROWS and self._tree.nodes:
            emit = self.dataChanged.emit
            emit(self.createIndex(0, NAME, 0), self.createIndex(0, DRIFT, 0))
            children = self._tree.nodes[0].children
            if children:
                emit(self.createIndex(0, NAME, children[0]), self.createIndex(len(children) - 1, DRIFT, children[-1]))
            return
        nodes, rows, create, emit = self._tree.nodes, self._row, self.createIndex, self.dataChanged.emit
        for i in changed:
            row = rows[i] if nodes[i].parent is not None else 0
            emit(create(row, NAME, i), create(row, DRIFT, i))
