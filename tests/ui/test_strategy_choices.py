"""The Compare tab lists every registered strategy, a third-party plugin's included."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.test_strategies import strategy_plugin  # noqa: F401  (fixture)


def test_compare_tab_offers_a_plugin_strategy_and_runs_it_by_name(strategy_plugin, window):  # noqa: F811
    panel = window.compare_panel
    texts = {panel.choices.item(i).data(Qt.ItemDataRole.UserRole): panel.choices.item(i).text()
             for i in range(panel.choices.count())}
    assert texts["probe2x"] == "probe2x: probe at twice the project's LR (third-party test strategy)"
    assert {"lora", "bitfit", "llrd", "lp-ft", "probe", "plan"} <= set(texts)
    for i in range(panel.choices.count()):
        item = panel.choices.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in ("probe2x", "lora")
                           else Qt.CheckState.Unchecked)
    assert panel.strategy_text() == "lora,probe2x"
