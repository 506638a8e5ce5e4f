"""The Results tab on a real run (digits, a tiny timm model, 1 epoch): matrix, per-class accuracy, mistakes, try an image."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from workbench.evaluate import classify_image, evaluate_run
from workbench.project import load_project
from workbench.training.prepare import prepare_training
from workbench_ui.results_panel import MAX_GALLERY

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process


def train_one_epoch(root: Path, data: str) -> Path:
    """A 1-epoch run through the API; ``data`` is the project's [data] section."""
    project = root / "project.toml"
    project.write_text(textwrap.dedent('''
        [model]
        source = "timm"
        name = "test_efficientnet"
        num_classes = {classes}
        input_size = [3, 32, 32]

        [train]
        epochs = 1
        batch_size = 32
        lr = 0.01
        num_workers = 0
        augment = false
    ''').format(classes=10 if "digits" in data else 3) + textwrap.dedent(data))
    run = root / "runs" / "one-epoch"
    prepared = prepare_training(load_project(project), run)
    for _ in prepared.trainer.run():
        pass
    return run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    return train_one_epoch(tmp_path_factory.mktemp("results"), '''
        [data]
        dataset = "digits"
        val_split = 0.1
    ''')


@pytest.fixture(scope="module")
def expected(digits_run):
    return evaluate_run(digits_run, device="cpu")


def open_results(window, run: Path, qtbot):
    window.open_run(run)
    panel = window.results_panel
    qtbot.waitUntil(lambda: panel.evaluation is not None or bool(panel.error), timeout=180_000)
    assert panel.error == ""
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=30_000)
    return panel


def digit_png(path: Path, index: int) -> Path:
    from workbench_plugins.digits_dataset import digits_arrays

    pixels, _labels = digits_arrays()
    Image.fromarray(np.asarray(pixels[index])).resize((32, 32), Image.Resampling.NEAREST).save(path)
    return path


def test_matrix_per_class_pairs_and_gallery_match_evaluate(window, digits_run, expected, qtbot):
    panel = open_results(window, digits_run, qtbot)
    ev = panel.evaluation
    shown = panel.matrix_view.matrix
    from workbench.data import open_images

    val_images = len(open_images(load_project(digits_run / "project.toml").data).val)
    assert sum(map(sum, shown)) == val_images == expected.total == 179  # 10% of each digit's images, rounded
    assert shown == expected.matrix and panel.matrix_view.classes == [str(d) for d in range(10)]
    assert f"{expected.accuracy:.1%}" in panel.summary.text()
    rows = [tuple(panel.per_class.item(r, c).text() for c in range(3)) for r in range(panel.per_class.rowCount())]
    assert rows == [(c.name, f"{c.correct:,} of {c.images:,}", f"{c.accuracy:.1%}") for c in expected.per_class()]
    assert expected.mistakes, "one epoch of a tiny random-init model leaves mistakes to show"
    first_pair = expected.confused_pairs()[0]
    assert panel.pairs.item(0, 0).text() == f"{first_pair.true} → {first_pair.predicted}"
    assert panel.pairs.item(0, 1).text() == str(first_pair.count)
    assert panel.gallery.count() == min(len(expected.mistakes), MAX_GALLERY)

    # Click a thumbnail: its top-5, label names and probabilities, the true class marked.
    second = panel.gallery.item(1)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.gallery.visualItemRect(second).center())
    mistake = expected.mistakes[1]
    assert panel.shown is ev.mistakes[1] and ev.mistakes[1].name == mistake.name
    assert panel.top_rows() == [(f"{i + 1}. {t.label}", f"{t.prob:.1%}") for i, t in enumerate(mistake.top)]
    assert len(panel.top_rows()) == 5
    assert f"true: <b style='color:#1b7f3b'>{mistake.true}</b>" in panel.details_caption.text()
    assert panel.preview.pixmap() is not None and not panel.preview.pixmap().isNull()

    # Click the most-confused cell of the matrix: the gallery lists exactly that pair's images.
    cell = panel.matrix_view.cell_rect(first_pair.true, first_pair.predicted).center().toPoint()
    qtbot.mouseClick(panel.matrix_view, Qt.MouseButton.LeftButton, pos=cell)
    assert panel.filter == (first_pair.true, first_pair.predicted)
    listed = [panel.gallery.item(i).text() for i in range(panel.gallery.count())]
    assert listed == [f"{first_pair.true}→{first_pair.predicted}"] * first_pair.count
    assert "true 5" not in panel.gallery_label.text() or first_pair.true == 5
    qtbot.mouseClick(panel.show_all_button, Qt.MouseButton.LeftButton)
    assert panel.filter is None and panel.gallery.count() == min(len(expected.mistakes), MAX_GALLERY)


def test_try_an_image_by_dialog_and_by_drop(window, digits_run, expected, qtbot, tmp_path, monkeypatch):
    panel = open_results(window, digits_run, qtbot)
    picked = digit_png(tmp_path / "seven.png", 7)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(picked), ""))
    want = classify_image(expected.module, expected.spec, picked)
    with qtbot.waitSignal(panel.predicted, timeout=60_000):
        qtbot.mouseClick(panel.try_button, Qt.MouseButton.LeftButton)
    assert panel.top_rows() == [(f"{i + 1}. {t.label}", f"{t.prob:.1%}") for i, t in enumerate(want.top)]
    assert {label.split(". ")[1] for label, _ in panel.top_rows()} <= {str(d) for d in range(10)}
    assert "seven.png" in panel.details_caption.text()

    dropped = digit_png(tmp_path / "three.png", 3)
    want = classify_image(expected.module, expected.spec, dropped)
    with qtbot.waitSignal(panel.predicted, timeout=60_000):
        drop(panel, dropped)
    assert panel.top_rows() == [(f"{i + 1}. {t.label}", f"{t.prob:.1%}") for i, t in enumerate(want.top)]
    assert "three.png" in panel.details_caption.text()

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    drop(panel, broken)
    qtbot.waitUntil(lambda: "Cannot classify broken.png" in panel.details_caption.text(), timeout=30_000)
    assert "cannot read" in panel.details_caption.text() and panel.top_rows() == []
    # A project dropped on the Results tab goes on to the window, which opens it.
    project = digits_run.parent.parent / "project.toml"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(project))])
    own = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                          Qt.KeyboardModifier.NoModifier)
    panel.dragEnterEvent(own)
    assert not own.isAccepted()  # the panel itself wants images only
    drop(panel, project, to_window=True)
    qtbot.waitUntil(lambda: window.session.project_path == project, timeout=60_000)


def drag_enter(widget, path: Path) -> QDragEnterEvent:
    """A drag entering ``widget``; Qt hands it to the parents when the widget ignores it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    event.setAccepted(False)
    QApplication.sendEvent(widget, event)
    event.mime = mime  # type: ignore[attr-defined]  # keep the data alive with the event
    return event


def drop(widget, path: Path, to_window: bool = False) -> None:
    """Drag ``path`` over ``widget`` and drop it (on the window when the widget passes it on)."""
    enter = drag_enter(widget, path)
    assert enter.isAccepted()
    target = widget.window() if to_window else widget
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, enter.mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, event)


def test_results_after_training_in_the_window_and_a_changed_dataset(window, wait_idle, qtbot, tmp_path, dialogs):
    """Train in the window: the Results tab evaluates the new run; data renamed since: a clear message."""
    from tests.test_evaluate import write_tiny_project

    project = write_tiny_project(tmp_path)
    window.open_project(project)
    wait_idle(window)
    assert window.data_panel.scan is not None
    qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.train_panel.run is None, timeout=180_000)
    assert window.train_panel.last_state == "finished"
    panel = window.results_panel
    qtbot.waitUntil(lambda: panel.evaluation is not None or bool(panel.error), timeout=120_000)
    assert panel.run_dir == window.train_panel.run_dir and panel.error == ""
    assert sum(map(sum, panel.matrix_view.matrix)) == 6  # 2 of 8 images per class, 3 classes
    assert panel.evaluation.accuracy == pytest.approx(window.train_panel.plots.curves["val_accuracy"].series.y[-1])
    assert dialogs.messages("critical") == []

    shutil.move(tmp_path / "data" / "red", tmp_path / "data" / "crimson")
    # The results arrive before the background call has finished; the button is enabled once it has.
    qtbot.waitUntil(panel.refresh_button.isEnabled, timeout=60_000)
    qtbot.mouseClick(panel.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(panel.error), timeout=120_000)
    assert "no longer matches the run's labels" in panel.summary.text() and "crimson" in panel.error
    assert panel.matrix_view.matrix == [] and panel.gallery.count() == 0 and not panel.try_button.isEnabled()


def test_a_misclassified_image_shows_where_the_starting_and_trained_model_looked(window, digits_run, expected, qtbot):
    from workbench.looking.run_heatmaps import RunHeatmaps

    panel = open_results(window, digits_run, qtbot)
    heatmap = panel.heatmap
    assert not heatmap.isVisible()  # nothing clicked yet
    first = panel.gallery.item(0)
    with qtbot.waitSignal(heatmap.drawn, timeout=180_000):
        qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton,
                         pos=panel.gallery.visualItemRect(first).center())
    mistake = expected.mistakes[0]
    assert heatmap.isVisible() and heatmap.picture.pixmap() is not None and not heatmap.picture.pixmap().isNull()
    assert heatmap.note.text().startswith(f"class '{mistake.predicted}' at ")
    # The same heatmaps as the core's, for the class the trained model predicted.
    core = RunHeatmaps(digits_run).for_image(panel.evaluation.mistakes[0].item.load())
    assert core.class_index == mistake.predicted and [t for t, _ in core.panels] == ["starting model", "trained model"]
    # The true class instead: drawn again for it.
    with qtbot.waitSignal(heatmap.drawn, timeout=180_000):
        qtbot.mouseClick(heatmap.true, Qt.MouseButton.LeftButton)
    assert heatmap.note.text().startswith(f"class '{mistake.true}' at ")
    panel.wait()
