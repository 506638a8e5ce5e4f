"""Pick unfreeze-schedule groups from the plan's groups: a combo whose popup has a check box per group."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QStyledItemDelegate, QStyleOptionViewItem, QWidget

ModelIndex = QModelIndex | QPersistentModelIndex


class GroupChecklist(QComboBox):
    """The groups to unfreeze: tick them in the popup (it stays open while ticking); the box lists them."""

    def __init__(self, names: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items = QStandardItemModel(self)
        for name in names:
            item = QStandardItem(name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self._items.appendRow(item)
        self.setModel(self._items)
        self.setEditable(True)  # only to show the ticked names; the text cannot be typed
        self.lineEdit().setReadOnly(True)
        self.setToolTip("Tick the groups that become trainable at this epoch")
        self.view().viewport().installEventFilter(self)
        self._items.itemChanged.connect(lambda *_: self._show())
        self._show()

    def names(self) -> list[str]:
        return [self._items.item(r).text() for r in range(self._items.rowCount())]

    def checked(self) -> list[str]:
        return [self._items.item(r).text() for r in range(self._items.rowCount())
                if self._items.item(r).checkState() == Qt.CheckState.Checked]

    def set_checked(self, names: list[str]) -> None:
        for r in range(self._items.rowCount()):
            item = self._items.item(r)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)
        self._show()

    def toggle(self, name: str) -> None:
        item = self._items.findItems(name)[0]
        checked = item.checkState() == Qt.CheckState.Checked
        item.setCheckState(Qt.CheckState.Unchecked if checked else Qt.CheckState.Checked)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        # A click in the popup ticks the row and keeps the popup open (a plain combo would pick and close).
        if watched is self.view().viewport() and event.type() == QEvent.Type.MouseButtonRelease:
            index = self.view().indexAt(event.position().toPoint())  # type: ignore[attr-defined]
            if index.isValid():
                self.toggle(str(index.data()))
            return True
        return super().eventFilter(watched, event)

    def hidePopup(self) -> None:  # noqa: N802
        super().hidePopup()
        self._show()
        self.setFocus()  # back to the box, where Enter commits the ticked groups

    def _show(self) -> None:
        checked = self.checked()
        self.lineEdit().setText(", ".join(checked) if checked else "(pick groups)")


class GroupPickerDelegate(QStyledItemDelegate):
    """Edits a schedule step's groups with a ``GroupChecklist`` of ``group_names()``."""

    def __init__(self, group_names: Callable[[], list[str]], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._group_names = group_names

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: ModelIndex) -> QWidget:  # noqa: N802
        current = index.data(Qt.ItemDataRole.EditRole) or []
        names = self._group_names()
        names += [n for n in current if n not in names]  # a step may name a group the plan lost: keep it visible
        return GroupChecklist(names, parent)

    def setEditorData(self, editor: QWidget, index: ModelIndex) -> None:  # noqa: N802
        assert isinstance(editor, GroupChecklist)
        editor.set_checked(list(index.data(Qt.ItemDataRole.EditRole) or []))

    def setModelData(self, editor: QWidget, model: object, index: ModelIndex) -> None:  # noqa: N802
        assert isinstance(editor, GroupChecklist)
        if editor.checked() != list(index.data(Qt.ItemDataRole.EditRole) or []):
            model.setData(index, editor.checked())  # type: ignore[attr-defined]
