"""The model picker: search over the model names sources offer, pretrained toggle, model files, recents."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, QStringListModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench.backbone import LoadRequest
from workbench.plugins import registry
from workbench.sources import needs_arch, pretrained_availability
from workbench_ui.look import muted
from workbench_ui.widgets import InputSizeEdit


def model_file_filter() -> str:
    """The open dialog's filter: every file the installed model sources take, then one entry per source."""
    sources = [caps for caps in registry().model_sources() if caps.takes_files]
    every = " ".join(f"*{suffix}" for caps in sources for suffix in caps.suffixes)
    return ";;".join([f"Model files ({every})"] + [caps.file_filter for caps in sources] + ["All files (*)"])

_AVAILABILITY_TEXT = {
    "installed": "✔ pretrained weights are installed by a package (work offline)",
    "cached": "✔ pretrained weights are cached on this machine",
    "remote": "⬇ pretrained weights exist but must be downloaded (random init when offline)",
    "none": "✖ no pretrained weights are published for this model",
}


class ModelPanel(QWidget):
    loadRequested = Signal(object)  # LoadRequest
    openFileRequested = Signal(str)  # a model file chosen, or a path from the recent list (model or project)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._catalogue: dict[str, str] = {}  # model name -> the source that offers it

        self.search = QLineEdit(placeholderText="Search models… (e.g. resnet, vit_small, convnext)")
        self.search.setClearButtonEnabled(True)
        self._names = QStringListModel(self)
        self._filtered = QSortFilterProxyModel(self)
        self._filtered.setSourceModel(self._names)
        self._filtered.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.names_view = QListView()
        self.names_view.setModel(self._filtered)
        self.names_view.setUniformItemSizes(True)
        self.names_view.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.count_label = QLabel("Loading the model list…")
        muted(self.count_label)

        self.pretrained = QCheckBox("Pretrained weights")
        self.availability = QLabel("")
        self.availability.setWordWrap(True)
        muted(self.availability)
        self.input_size = InputSizeEdit(allow_default=True)
        self.input_size.setToolTip("C×H×W the model is built and run at (e.g. 3×48×192 for an OCR line; empty = the "
                                   "model's default); a model built for one size (a ViT) is rebuilt for it")
        self.input_size.rejected.connect(lambda message: self.availability.setText(f"✖ input size: {message}"))
        self.load_button = QPushButton("Load model")
        self.load_button.setDefault(True)
        self.load_button.setEnabled(False)

        options = QFormLayout()
        options.addRow(self.pretrained)
        options.addRow(self.availability)
        options.addRow("Input size", self.input_size)

        names_box = QGroupBox("Model by name")
        names_layout = QVBoxLayout(names_box)
        names_layout.addWidget(self.search)
        names_layout.addWidget(self.names_view, 1)
        names_layout.addWidget(self.count_label)
        names_layout.addLayout(options)
        names_layout.addWidget(self.load_button)

        self.open_file = QPushButton("Open model file…")
        files = QHBoxLayout()
        files.addWidget(self.open_file)
        files.addStretch(1)
        self.file_hint = QLabel("…or drop a model file or a project .toml onto the window.")
        self.file_hint.setWordWrap(True)
        muted(self.file_hint)

        file_box = QGroupBox("From a file")
        file_layout = QVBoxLayout(file_box)
        file_layout.addLayout(files)
        file_layout.addWidget(self.file_hint)

        self.recent = QListWidget()
        self.recent.setMaximumHeight(120)
        recent_box = QGroupBox("Recent files")
        recent_layout = QVBoxLayout(recent_box)
        recent_layout.addWidget(self.recent)

        layout = QVBoxLayout(self)
        layout.addWidget(names_box, 1)
        layout.addWidget(file_box)
        layout.addWidget(recent_box)

        self._name_set: set[str] = set()
        self.search.textChanged.connect(self._search_changed)
        self.search.returnPressed.connect(self._load_selected)
        self.names_view.selectionModel().currentChanged.connect(lambda *_: self._selection_changed())
        self.names_view.doubleClicked.connect(lambda *_: self._load_selected())
        self.pretrained.toggled.connect(lambda *_: self._selection_changed())
        self.load_button.clicked.connect(self._load_selected)
        self.open_file.clicked.connect(self._choose_file)
        self.recent.itemActivated.connect(lambda item: self.openFileRequested.emit(item.data(Qt.ItemDataRole.UserRole)))

    # -- filled in by the window once the sources' model lists have been read in the background ----
    def set_model_names(self, catalogue: dict[str, str]) -> None:
        """The names the sources that take names offer (name -> source); the suffixes of those taking files."""
        self._catalogue = dict(catalogue)
        names = list(catalogue)
        self._names.setStringList(names)
        self._name_set = set(names)
        sources = registry().model_sources()
        tip = f"Model files the installed sources open: {', '.join(s for caps in sources for s in caps.suffixes)}"
        if any(caps.takes_arch for caps in sources):
            tip += ". Weights that no config.json beside them describes are loaded into the model selected above"
        for widget in (self.open_file, self.file_hint):
            widget.setToolTip(tip)
        self.count_label.setText(f"{len(names):,} architectures")
        self.load_button.setEnabled(True)
        self.select_name("resnet18")

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            item = QListWidgetItem(Path(path).name)
            item.setToolTip(path)
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.recent.addItem(item)

    def select_name(self, name: str) -> bool:
        matches = self._filtered.match(self._filtered.index(0, 0), Qt.ItemDataRole.DisplayRole, name, 1,
                                       Qt.MatchFlag.MatchExactly)
        if not matches:
            return False
        self.names_view.setCurrentIndex(matches[0])
        # Scrolling before the first layout pass is a no-op; do it once the view has its size.
        QTimer.singleShot(0, lambda: self.names_view.scrollTo(self.names_view.currentIndex(),
                                                              QListView.ScrollHint.PositionAtCenter))
        return True

    def selected_name(self) -> str | None:
        """The name typed when it is an exact model name (it always wins), else the highlighted row."""
        text = self.search.text().strip()
        if text in self._name_set:
            return text
        index = self.names_view.currentIndex()
        if index.isValid():
            return str(index.data())
        return text or None

    def show_loaded(self, name: str, pretrained: bool | None = None) -> None:
        """Show the model that was loaded (not whatever was last searched for), and whether with pretrained weights."""
        self.search.blockSignals(True)
        self.search.setText(name if name in self._name_set else "")
        self.search.blockSignals(False)
        self._filtered.setFilterFixedString(self.search.text())
        self.select_name(name)
        if pretrained is not None:
            self.pretrained.setChecked(pretrained)

    def _search_changed(self, text: str) -> None:
        self._filtered.setFilterFixedString(text)
        exact = text.strip()
        if exact in self._name_set:
            self.select_name(exact)  # highlight exactly what was typed, not the first name containing it
        elif not self.names_view.currentIndex().isValid() and self._filtered.rowCount():
            self.names_view.setCurrentIndex(self._filtered.index(0, 0))
        self._selection_changed()

    def _source_of(self, name: str) -> str | None:
        """The source offering ``name``; a name typed that no list holds goes to the first source taking names."""
        return self._catalogue.get(name) or next(iter(self._catalogue.values()), None)

    def request(self) -> LoadRequest | None:
        name = self.selected_name()
        source = self._source_of(name) if name else None
        if not name or source is None:
            return None
        return LoadRequest(name, source=source, pretrained=self.pretrained.isChecked(), input_size=self._size())

    def _selection_changed(self) -> None:
        name = self.selected_name()
        source = self._source_of(name) if name else None
        if not name or source is None:
            self.availability.setText("")
            return
        state = pretrained_availability(source, name)
        text = _AVAILABILITY_TEXT.get(state, state)
        self.availability.setText(text)
        self.pretrained.setEnabled(state != "none")
        if state == "none":
            self.pretrained.setChecked(False)

    def _load_selected(self) -> None:
        request = self.request()
        if request is not None and self.load_button.isEnabled():
            self.loadRequested.emit(request)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", "", model_file_filter())
        if path:
            self.openFileRequested.emit(path)

    def _size(self) -> tuple[int, int, int] | None:
        self.input_size.commit()  # a size typed without Enter still counts (or is refused with its reason)
        return self.input_size.size()

    def file_request(self, path: str, source: str) -> LoadRequest:
        """Load the file at ``path`` with ``source``; weights that need their architecture take the selected name."""
        arch = self.selected_name() if needs_arch(source, path) else None
        return LoadRequest(path, source=source, arch=arch, input_size=self._size())
