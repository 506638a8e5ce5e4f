"""Screenshots of the "Look inside" views and the Results tab's heatmaps, in the real window at 1440×900.

    xvfb-run -s "-screen 0 1440x900x24" python scripts/look_inside_screenshots.py docs/screenshots

Loads the demo (pretrained EfficientNet-Lite0 on the digits), trains it one epoch in this process, then:
feature visualisation of blocks.3 in the window; the probe by depth with its "Freeze up to here" row; the
run's drift on the graph; a misclassified digit's before/after Grad-CAM on the Results tab. Each picture
is the window as drawn (QWidget.grab).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def wait_until(app, condition, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from workbench.demo import demo_plan
    from workbench.drift import diff_run_from_start, tree_drift
    from workbench.training.prepare import build_trainer
    from workbench.workspace import Workspace
    from workbench_ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp())
    window = MainWindow(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat), runs_root=scratch / "runs")
    window.resize(1440, 900)
    window.show()
    plan = demo_plan()
    plan.train.epochs = 1
    ws = Workspace.from_plan(plan)
    run = scratch / "runs" / "demo-one-epoch"
    for _ in build_trainer(ws, run).run():
        pass

    window.open_run(run)
    wait_until(app, lambda: window.session.workspace is not None and not window.calls)
    look = window.look_panel
    window.tabs.setCurrentWidget(look)
    wait_until(app, lambda: bool(look.graph.boxes) and not look.calls)

    look.layer.setCurrentText("blocks.3")
    look.features.channels.setText("0-7")
    look.features.side.setValue(96)
    look.features.start.click()
    wait_until(app, lambda: look.features.call is None)
    window.grab().save(str(out / "18-look-feature-visualisation.png"))

    window.session.workspace.plan.train.epochs = 2
    look.probe.click()
    wait_until(app, lambda: look.depth_choice.isVisible() and not look.calls)
    window.grab().save(str(out / "19-probe-by-depth-actions.png"))

    ws = window.session.workspace
    look.set_drift(tree_drift(diff_run_from_start(run), ws.tree))
    look.drift_overlay.setChecked(True)
    boxes = list(look.graph.boxes.values())
    look.graph.centerOn(boxes[len(boxes) * 2 // 3])
    app.processEvents()
    window.grab().save(str(out / "20-graph-drift-overlay.png"))

    results = window.results_panel
    window.tabs.setCurrentWidget(results)
    wait_until(app, lambda: results.evaluation is not None and not results.is_busy())
    results.gallery.setCurrentRow(0)
    wait_until(app, lambda: results.heatmap.picture.pixmap() is not None and not results.heatmap.picture.pixmap().isNull()
               and not results.heatmap.calls)
    window.grab().save(str(out / "21-results-before-after-heatmap.png"))
    print(f"wrote 4 screenshots to {out}")
    window.close()


if __name__ == "__main__":
    main()
