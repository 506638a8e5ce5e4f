"""The "Look inside" tab: the model graph beside activation maps, class heatmaps, feature visualisation and
the probe by depth (with "freeze up to here" / "cut here" from its result), and a run's drift on the graph.

All model work runs in background calls (workbench.looking does it; this file only shows results):
the graph when the tab is first shown after a load (not at load: the summary bar's FLOP count installs
process-wide module hooks while it runs, and a forward pass in another thread at that moment breaks
both), pictures when asked. The graph's selection follows the layer tree and
the reverse (``layerChosen``); the graph's context menu freezes and unfreezes through the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from workbench.plan import ModelConfig
from workbench.schema_limits import field_limits
from workbench_ui.depth_choice import DepthChoice
from workbench_ui.look import muted
from workbench_ui.look_features import FeatureVisControls
from workbench_ui.look_graph_view import GraphView
from workbench_ui.session import WorkbenchSession
from workbench_ui.workers import BackgroundCall


class LookPanel(QWidget):
    layerChosen = Signal(str)  # a graph node was clicked: its module path
    cutRequested = Signal(str)  # "Cut here" on a depth of the probe: the module path
    failed = Signal(str, str)

    def __init__(self, session: WorkbenchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.calls: list[BackgroundCall] = []
        self.image_path: Path | None = None
        self._graph_stale = True
        self.drift_by_path: dict[str, float | None] = {}

        self.layer = QComboBox(editable=True)
        self.layer.setMinimumContentsLength(18)
        self.layer.setToolTip("The module to look at (click a node in the graph or a row in the Layers tab)")
        self.choose_image = QPushButton("Image…")
        self.image_label = QLabel("no image")
        muted(self.image_label)
        self.top = QSpinBox(minimum=1, maximum=64, value=12)
        self.top.setPrefix("top ")
        self.activations = QPushButton("Activation maps")
        self.method = QComboBox()
        from workbench.looking.heatmaps import METHODS

        self.method.addItems(list(METHODS))
        classes = field_limits(ModelConfig, "num_classes").maximum or 1
        self.class_index = QSpinBox(minimum=-1, maximum=int(classes) - 1, value=-1)  # -1: the predicted class
        self.class_index.setSpecialValueText("predicted class")
        self.heatmap = QPushButton("Class heatmap")
        self.probe = QPushButton("Probe by depth")
        self.probe.setToolTip("A linear probe on each stage's pooled output over the project's data "
                              "(one pass of the frozen model): where do the features stop transferring?")
        self.features = FeatureVisControls(self._inputs_without_image)
        self.depth_choice = DepthChoice(session)
        self.drift_overlay = QCheckBox("Drift on the graph")
        self.drift_overlay.setToolTip("Colour the graph by how far the last run moved each block "
                                      "(‖W′−W‖/‖W‖; white: unchanged)")
        self.drift_overlay.setEnabled(False)
        self.status = QLabel("")
        muted(self.status)

        controls = QHBoxLayout()
        for w in (QLabel("Layer"), self.layer, self.choose_image, self.image_label, self.top, self.activations,
                  self.method, self.class_index, self.heatmap, self.probe):
            controls.addWidget(w)
        controls.addStretch(1)

        self.graph = GraphView()
        self.graph_note = QLabel("")
        muted(self.graph_note)
        graph_box = QWidget()
        graph_layout = QVBoxLayout(graph_box)
        graph_layout.setContentsMargins(0, 0, 0, 0)
        graph_layout.addWidget(self.graph_note)
        graph_layout.addWidget(self.graph, 1)
        self.picture = QLabel("Pick a layer and an image, then Activation maps or Class heatmap.")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picture)
        split = QSplitter()
        split.addWidget(graph_box)
        split.addWidget(scroll)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)

        second = QHBoxLayout()
        second.addWidget(self.features)
        second.addWidget(self.drift_overlay)
        second.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addLayout(second)
        layout.addWidget(self.depth_choice)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

        self.choose_image.clicked.connect(self._choose_image)
        self.activations.clicked.connect(self.show_activations)
        self.heatmap.clicked.connect(self.show_heatmap)
        self.probe.clicked.connect(self.show_probe_by_depth)
        self.features.pictured.connect(self._show_png)
        self.features.failed.connect(self.failed)
        self.features.progressed.connect(self.status.setText)
        self.depth_choice.cutRequested.connect(self.cutRequested)
        self.depth_choice.failed.connect(self.failed)
        self.drift_overlay.toggled.connect(self._apply_overlay)
        self.graph.nodeClicked.connect(self._node_clicked)
        self.graph.freezeRequested.connect(self._freeze)
        session.workspaceChanged.connect(self._workspace_changed)
        session.resolutionChanged.connect(self._states_changed)
        self._workspace_changed()

    # -- model and graph ----------------------------------------------------------------------
    def _workspace_changed(self) -> None:
        ws = self.session.workspace
        self.layer.clear()
        self.depth_choice.show_results(None)
        self.set_drift(None)
        for w in (self.activations, self.heatmap, self.probe, self.layer):
            w.setEnabled(ws is not None)
        if ws is None:
            self.graph.scene().clear()
            self.graph_note.setText("Load a model to see its graph.")
            return
        self.layer.addItems([n.path for n in ws.tree.nodes if n.path])
        self.graph.scene().clear()
        self.graph_note.setText("")
        self._graph_stale = True
        if self.isVisible():
            self._rebuild_graph()

    def _states_changed(self) -> None:
        self._graph_stale = True
        if self.isVisible() and self.session.workspace is not None:
            self._rebuild_graph()

    def showEvent(self, event: Any) -> None:  # noqa: N802
        super().showEvent(event)
        if self._graph_stale and self.session.workspace is not None:
            self._rebuild_graph()

    def _rebuild_graph(self) -> None:
        ws = self.session.workspace
        if ws is None:
            return
        self._graph_stale = False
        module, size = ws.backbone.module, tuple(ws.backbone.spec.input_size)
        resolution = self.session.resolution
        states = ({n.path: resolution.node_state[n.index] for n in ws.tree.nodes}
                  if resolution is not None else None)
        self.graph_note.setText("Tracing the graph…")

        def build() -> Any:
            import torch

            from workbench.looking.model_graph import lay_out, model_graph

            graph = model_graph(module, torch.randn(1, *size), states=states)
            lay_out(graph)
            return graph

        def shown(graph: Any) -> None:
            self.graph.show_graph(graph)
            self._apply_overlay()
            skips = len(graph.skips()) + sum(n.skips for n in graph.nodes)
            self.graph_note.setText(f"{len(graph.nodes)} blocks, {len(graph.edges)} edges, {skips} skip "
                                    "connections. Click a block to select it; right-click to freeze.")

        self._call(build, "tracing the model graph", shown,
                   failed=lambda message, _details: self.graph_note.setText(
                       f"No graph: {message}. The Layers tab shows the tree."))

    def set_drift(self, drift: list[float | None] | None) -> None:
        """Per tree node drift of a run (``workbench.drift.tree_drift``), or None: no run to show."""
        ws = self.session.workspace
        self.drift_by_path = ({n.path: v for n, v in zip(ws.tree.nodes, drift)}
                              if drift is not None and ws is not None else {})
        self.drift_overlay.setEnabled(bool(self.drift_by_path))
        if not self.drift_by_path:
            self.drift_overlay.setChecked(False)
        self._apply_overlay()

    def _apply_overlay(self) -> None:
        self.graph.set_overlay(self.drift_by_path if self.drift_overlay.isChecked() else None)

    def select_layer(self, path: str) -> None:
        """Show ``path`` as the chosen layer (a tree selection) and outline it in the graph."""
        self.layer.setCurrentText(path)
        self.graph.select(path)

    def _node_clicked(self, path: str) -> None:
        self.layer.setCurrentText(path)
        self.layerChosen.emit(path)

    def _freeze(self, path: str, frozen: bool) -> None:
        from workbench.errors import WorkbenchError

        try:
            self.session.set_frozen(path, frozen)
        except WorkbenchError as exc:
            self.failed.emit(str(exc), "")

    # -- pictures -----------------------------------------------------------------------------
    def _choose_image(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Image to look at", "",
                                              "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff)")
        if name:
            self.set_image(Path(name))

    def set_image(self, path: Path) -> None:
        self.image_path = path
        self.image_label.setText(path.name)

    def _inputs_without_image(self) -> tuple[Any, Any, str] | None:
        ws = self.session.workspace
        if ws is None:
            return None
        return ws.backbone.module, ws.backbone.spec, self.layer.currentText().strip()

    def _inputs(self) -> tuple[Any, Any, str] | None:
        ws = self.session.workspace
        if ws is None:
            return None
        if self.image_path is None:
            self.failed.emit("Choose an image first (Image…).", "")
            return None
        return ws.backbone.module, ws.backbone.spec, self.layer.currentText().strip()

    def show_activations(self) -> None:
        got = self._inputs()
        if got is None:
            return
        module, spec, layer = got
        image, top = self.image_path, self.top.value()

        def draw() -> bytes:
            from workbench.looking.activations import look
            from workbench.looking.inputs import feed
            from workbench.looking.pictures import activation_figure, png_bytes

            fed = feed(image, spec)
            return png_bytes(activation_figure(look(module, layer, fed.tensor, top), fed.pixels))

        self._call(draw, f"activation maps of {layer}", self._show_png)

    def show_heatmap(self) -> None:
        got = self._inputs()
        if got is None:
            return
        module, spec, layer = got
        image, method = self.image_path, self.method.currentText()
        class_index = None if self.class_index.value() < 0 else self.class_index.value()

        def draw() -> bytes:
            from workbench.looking.heatmaps import class_heatmap
            from workbench.looking.inputs import feed
            from workbench.looking.pictures import heatmap_figure, png_bytes

            fed = feed(image, spec)
            heat = class_heatmap(module, fed.tensor, layer=layer or None, class_index=class_index, method=method,
                                 label_names=spec.label_names)
            return png_bytes(heatmap_figure([(spec.architecture, heat)], fed.pixels))

        self._call(draw, "class heatmap", self._show_png)

    def show_probe_by_depth(self) -> None:
        ws = self.session.workspace
        if ws is None:
            return

        def draw() -> tuple[bytes, Any]:
            from workbench.data import open_data
            from workbench.looking.pictures import depth_figure, png_bytes
            from workbench.looking.probe_depth import probe_by_depth

            data = open_data(ws.plan.data, ws.plan.base_dir, ws.backbone.spec, augment=False)
            result = probe_by_depth(ws, data)
            return png_bytes(depth_figure(result, f"{ws.backbone.spec.architecture} on {data.source}: "
                                                  "linear probe by depth")), result

        def shown(drawn: tuple[bytes, Any]) -> None:
            self._show_png(drawn[0])
            if self.session.workspace is ws:  # not a result for a model replaced meanwhile
                self.depth_choice.show_results(drawn[1])

        self._call(draw, "probe by depth", shown)

    def _show_png(self, data: bytes) -> None:
        """Show a picture whole: one wider than the pane is scaled down to its width (never up)."""
        pixmap = QPixmap()
        pixmap.loadFromData(data, "PNG")
        width = self.scroll.viewport().width() - 4
        if 0 < width < pixmap.width():
            pixmap = pixmap.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.picture.setPixmap(pixmap)

    def _call(self, fn: Any, label: str, done: Any, failed: Any = None) -> None:
        call = BackgroundCall(fn, label, self)
        self.calls.append(call)
        self.status.setText(f"{label}…")
        call.succeeded.connect(done)
        call.failed.connect(failed or (lambda message, details: self.failed.emit(message, details)))
        call.finished.connect(lambda: (self.calls.remove(call), self.status.setText("")))
        call.start()

    def wait(self) -> None:
        for call in list(self.calls):
            call.wait()
        self.features.wait()


def connect_to_tree(panel: LookPanel, tree_panel: Any) -> None:
    """Selecting a graph node selects its tree row, and clicking a tree row outlines its graph node."""

    def to_tree(path: str) -> None:
        model = tree_panel.model
        if model is not None:
            index = model.index_of_path(path)
            tree_panel.view.setCurrentIndex(index)
            tree_panel.view.scrollTo(index)

    def to_graph(index: Any) -> None:
        path = tree_panel.path_at(index)
        if path:
            panel.select_layer(path)

    panel.layerChosen.connect(to_tree)
    panel.cutRequested.connect(tree_panel.cut_here)
    tree_panel.view.clicked.connect(to_graph)
