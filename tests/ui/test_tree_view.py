"""The layer tree as a user sees it: a mouse click on a check box updates the tree, totals and groups;
columns fit their content and can be widened; ONNX names are readable."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QHeaderView, QStyle, QStyleOptionViewItem

from tests.ui.test_typed_values import _row
from workbench.backbone import LoadRequest
from workbench.sources import load_backbone
from workbench.workspace import Workspace
from workbench_ui.qt_layer_tree import FULL_TYPE_ROLE, NAME, TRAINABLE, TYPE, short_type_name


def click_box(qtbot, view, index) -> None:
    view.scrollTo(index)
    option = QStyleOptionViewItem()
    option.rect = view.visualRect(index)
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
    box = view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, view)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=box.center())


def test_a_click_on_a_box_updates_tree_totals_and_groups(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    panel, session = window.tree_panel, window.session
    view, model = panel.view, panel.model
    view.expandAll()  # the whole tree open, as in the responsiveness budget
    groups = window.groups_panel.groups_model
    tree = resnet18_workspace.tree
    layer4, total = tree.node("layer4"), tree.total_params
    layer4_row = _row(groups, "layer4")
    assert groups.index(layer4_row, groups.PARAMS).data() != "frozen"

    click_box(qtbot, view, model.index_of_path("layer4"))
    assert session.plan.freeze.frozen == ["layer4"]
    for node in tree.subtree(layer4):  # every row under it shows frozen, not only the clicked one
        index = model.index_of(node.index)
        if node.param_count:
            assert index.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked, node.path
            assert model.index_of(node.index, TRAINABLE).data() == "frozen", node.path
    assert model.index_of(0).data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.PartiallyChecked
    trainable = total - layer4.param_count
    assert model.index_of(0, TRAINABLE).data() == f"{trainable / 1e6:.2f} M"
    assert window.summary_bar.summary.text().startswith(f"{trainable:,} of {total:,} parameters trainable")
    assert window.summary_bar.share.value() == int(1000 * trainable / total)
    assert groups.index(layer4_row, groups.PARAMS).data() == "frozen"

    click_box(qtbot, view, model.index_of_path("layer4.1.conv2"))  # a box inside the frozen block
    assert model.index_of_path("layer4.1.conv2").data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert model.index_of_path("layer4").data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.PartiallyChecked
    conv2 = tree.node("layer4.1.conv2").param_count
    assert groups.index(layer4_row, groups.PARAMS).data() == f"{conv2 / 1e6:.2f} M"

    click_box(qtbot, view, model.index_of_path("layer4"))  # the partial box: the whole block trains again
    assert session.resolution.trainable_params == total
    assert window.summary_bar.summary.text().startswith(f"{total:,} of {total:,}")
    assert groups.index(layer4_row, groups.PARAMS).data() == f"{layer4.param_count / 1e6:.2f} M"


def test_layer_column_fits_its_names_and_the_user_can_widen_it(window, resnet18_workspace, qtbot):
    window.session.set_workspace(resnet18_workspace)
    view = window.tree_panel.view
    header = view.header()
    assert all(header.sectionResizeMode(c) == QHeaderView.ResizeMode.Interactive for c in range(header.count()))
    deepest = max(resnet18_workspace.tree.nodes, key=lambda n: n.depth * 100 + len(n.name))
    view.expandAll()
    index = window.tree_panel.model.index_of_path(deepest.path)
    view.scrollTo(index)
    text_right = view.visualRect(index).left() + view.fontMetrics().horizontalAdvance(deepest.name)
    assert text_right < view.columnWidth(NAME)  # "downsample" at depth 3 is not cut off

    width = view.columnWidth(NAME)
    edge = header.sectionViewportPosition(NAME) + width - 1
    y = header.height() // 2
    qtbot.mousePress(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(edge, y))
    qtbot.mouseMove(header.viewport(), pos=QPoint(edge + 60, y))
    qtbot.mouseRelease(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(edge + 60, y))
    assert view.columnWidth(NAME) >= width + 50


def test_long_onnx_type_names_are_shortened_with_the_full_name_in_the_tooltip(window, tiny_onnx, qtbot):
    ws = Workspace.from_backbone(load_backbone(LoadRequest(str(tiny_onnx), source="onnx")))
    window.session.set_workspace(ws)
    model, view = window.tree_panel.model, window.tree_panel.view
    pool = next(n for n in ws.tree.nodes if n.type_name.startswith("OnnxGlobalAveragePool"))
    index = model.index_of(pool.index, TYPE)
    assert len(pool.type_name) > 30
    shown = index.data()
    assert shown == short_type_name(pool.type_name) and len(shown) <= 22 and not shown.startswith("Onnx")
    assert pool.type_name in index.data(Qt.ItemDataRole.ToolTipRole)
    assert index.data(FULL_TYPE_ROLE) == pool.type_name
    assert model.index_of_path("n3", TYPE).data() == "Conv2d"  # short names stay as they are
    # The node's name in the ONNX file, which module paths cannot keep (they must be identifiers).
    assert "node in the file: /5/GlobalAveragePool" in model.index_of(pool.index, NAME).data(Qt.ItemDataRole.ToolTipRole)
    fm = view.fontMetrics()
    assert view.columnWidth(TYPE) >= fm.horizontalAdvance(shown)
    window.tree_panel.filter.setText(pool.type_name)  # the filter matches the full class name
    assert window.tree_panel.is_shown(pool.path) and not window.tree_panel.is_shown("n3")


def test_a_tick_that_changes_many_rows_repaints_them_at_once_and_keeps_the_tree_open(window, resnet18_workspace,
                                                                                     qtbot, monkeypatch):
    from PySide6.QtCore import QEvent, QObject

    class PaintedRegions(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.regions: list = []

        def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                self.regions.append(event.region())
            return False

    import workbench_ui.qt_layer_tree

    monkeypatch.setattr(workbench_ui.qt_layer_tree, "BULK_ROWS", 10)  # resnet18 has 68 modules; big models pass 100
    window.session.set_workspace(resnet18_workspace)
    view, model, tree = window.tree_panel.view, window.tree_panel.model, resnet18_workspace.tree
    view.expandAll()
    view.scrollTo(model.index_of_path("layer3.1.bn2"))
    scrolled = view.verticalScrollBar().value()
    signals: list[str] = []
    model.layoutChanged.connect(lambda *_: signals.append("layout"))
    model.dataChanged.connect(lambda *_: signals.append("data"))
    painted = PaintedRegions()
    view.viewport().installEventFilter(painted)
    qtbot.wait(50)
    painted.regions.clear()
    click_box(qtbot, view, model.index_of_path("layer3"))  # 15 rows change
    assert signals == ["data", "data"]  # the root row, then the root's children: no relayout, no signal per row
    qtbot.waitUntil(lambda: bool(painted.regions), timeout=5_000)
    row = view.visualRect(model.index_of_path("layer3.1.bn2"))  # a changed row deep in the tree, on screen
    assert row.isValid() and any(region.contains(row) for region in painted.regions)
    assert all(view.isExpanded(model.index_of(n.index)) for n in tree.nodes if n.children)
    assert all(model.index_of(n.index).data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked
               for n in tree.subtree(tree.node("layer3")) if n.param_count)
    assert model.index_of_path("layer3", TRAINABLE).data() == "frozen"
    assert view.verticalScrollBar().value() == scrolled
    signals.clear()
    click_box(qtbot, view, model.index_of_path("layer3.1.bn2"))  # 1 row and its ancestors: signals per row
    assert signals and set(signals) == {"data"}
