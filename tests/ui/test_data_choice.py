"""The Data tab lists every installed dataset plugin (built-in and third-party) and a user picks one by keyboard."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.plugin_fixtures import third_party_plugins  # noqa: F401  (fixture)


def choose_dataset(qtbot, panel, name: str) -> None:
    """Pick ``name`` in the Dataset box as a user does: focus it and press Down/Up until it is shown."""
    combo = panel.dataset
    target = combo.findData(name)
    assert target >= 0, [combo.itemData(i) for i in range(combo.count())]
    combo.setFocus()
    while combo.currentIndex() != target:
        key = Qt.Key.Key_Down if combo.currentIndex() < target else Qt.Key.Key_Up
        qtbot.keyClick(combo, key)


def scanned_text(window, qtbot) -> str:
    panel = window.data_panel
    qtbot.waitUntil(lambda: not panel.is_scanning() and "Reading" not in panel.status.text(), timeout=60_000)
    return panel.status.text()


def test_dataset_box_lists_the_installed_plugins_with_their_titles(window, wait_idle):
    window.start_background_init()  # loads the plugins off the start-up path
    wait_idle(window)
    combo = window.data_panel.dataset
    names = [combo.itemData(i) for i in range(combo.count())]
    assert names[:4] == ["digits", "folder", "shards", "table"]
    assert "tar shards" in combo.itemText(2) and "Feature table" in combo.itemText(3)


def test_feature_table_is_picked_browsed_as_a_file_and_scanned(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    table = tmp_path / "features.npz"
    rng = np.random.default_rng(0)
    np.savez(table, x=rng.normal(size=(40, 6)).astype(np.float32), y=np.repeat(np.arange(4), 10))
    asked: list[str] = []

    def fake_open(parent, caption, folder, file_filter):
        asked.append(file_filter)
        return str(table), file_filter

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_open))
    panel = window.data_panel
    window.tabs.setCurrentWidget(panel)
    choose_dataset(qtbot, panel, "table")
    assert window.session.plan.data.dataset == "table"
    assert panel.path_label.text() == "File" and panel.browse.isEnabled()
    qtbot.mouseClick(panel.browse, Qt.MouseButton.LeftButton)
    assert asked and "*.npz" in asked[0]  # a file dialog with the plugin's filter, not a folder dialog
    assert window.session.plan.data.path == str(table)
    text = scanned_text(window, qtbot)
    assert "4 classes" in text and "validation rows" in text, text
    assert panel.classes.rowCount() == 4


def test_demo_needs_no_path_and_typing_a_path_is_kept_for_the_folder_choice(window, qtbot, tmp_path):
    panel = window.data_panel
    window.tabs.setCurrentWidget(panel)
    choose_dataset(qtbot, panel, "folder")
    panel.folder.setFocus()
    qtbot.keyClicks(panel.folder, str(tmp_path / "no-such-folder"))
    qtbot.keyClick(panel.folder, Qt.Key.Key_Return)
    assert window.session.plan.data.path == str(tmp_path / "no-such-folder")
    assert "no-such-folder" in scanned_text(window, qtbot)  # the plugin's own error names the folder

    choose_dataset(qtbot, panel, "digits")
    assert not panel.folder.isEnabled() and not panel.browse.isEnabled()
    text = scanned_text(window, qtbot)
    assert "10 classes" in text and "images" in text, text


def test_third_party_dataset_appears_and_scans_without_a_gui_edit(third_party_plugins, window, qtbot):  # noqa: F811
    panel = window.data_panel
    window.tabs.setCurrentWidget(panel)  # shown before the background start-up: it lists the plugins itself
    titles = [panel.dataset.itemText(i) for i in range(panel.dataset.count())]
    assert "Blobs (third-party test dataset)" in titles
    assert "broken" not in [panel.dataset.itemData(i) for i in range(panel.dataset.count())]  # failed to load
    choose_dataset(qtbot, panel, "fakeblobs")
    assert window.session.plan.data.dataset == "fakeblobs"
    assert not panel.browse.isEnabled()  # it declares that it needs no path
    text = scanned_text(window, qtbot)
    assert "3 classes" in text and "30 training and 30 validation rows" in text, text


def test_a_project_naming_an_uninstalled_dataset_shows_it_and_says_why(window, qtbot):
    def change(plan):
        plan.data.dataset = "not-installed-ds"

    # The project file refuses unknown datasets on load; a plan edited in code may still name one.
    window.tabs.setCurrentWidget(window.data_panel)
    window.session.edit(change)
    window.data_panel.sync_from_plan()
    combo = window.data_panel.dataset
    assert combo.currentData() == "not-installed-ds" and "not installed" in combo.currentText()
    assert "not-installed-ds" in scanned_text(window, qtbot)
