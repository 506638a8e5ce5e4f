"""Screenshots of the real window on the demo, for the README.

    xvfb-run -a -s '-screen 0 1440x900x24' python scripts/screenshots.py [--out docs/screenshots] [--only 10]

Opens the demo (pretrained efficientnet_lite0 on handwritten digits), shows the layer tree, the
data, trains two epochs, shows the Results tab (confusion matrix, a misclassified digit's top-5)
and exports to ONNX; saves one PNG per view (``--only``: just the views whose names start so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated name prefixes to save, e.g. 10,04")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="workbench-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")  # never touch the user's window settings
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))

    from PySide6.QtCore import QSettings, QTimer

    from workbench_ui.app import create_application
    from workbench_ui.main_window import MainWindow

    app = create_application()
    window = MainWindow(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat),
                        runs_root=scratch / "runs")
    window.resize(1440, 860)
    window.show()
    window.start_background_init()
    window.open_demo()
    started = time.monotonic()
    saved: list[Path] = []

    only = [p for p in args.only.split(",") if p]

    def shot(widget, name: str) -> None:
        if only and not any(name.startswith(p) for p in only):
            return
        app.processEvents()
        path = args.out / name
        widget.grab().save(str(path))
        saved.append(path)
        print(f"saved {path}")

    steps: list[tuple[Callable[[], bool], Callable[[], None]]] = []

    def when(ready: Callable[[], bool]) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def register(action: Callable[[], None]) -> Callable[[], None]:
            steps.append((ready, action))
            return action
        return register

    def idle() -> bool:
        return (not window.is_busy() and not window.data_panel.is_scanning()
                and window.session.workspace is not None and window.data_panel.scan is not None)

    @when(idle)
    def layers() -> None:
        window.tabs.setCurrentWidget(window.tree_panel)
        model, view = window.tree_panel.model, window.tree_panel.view
        from workbench.demo import DEMO_MODEL

        tree = window.session.workspace.tree
        for path in ("blocks", "blocks.6", "blocks.6.0"):  # the demo's top block, opened
            if tree.find_node(path) is not None:
                view.expand(model.index_of_path(path))
        window.model_panel.select_name(DEMO_MODEL)
        shot(window, "01-layers.png")

    @when(lambda: True)
    def data() -> None:
        window.tabs.setCurrentWidget(window.data_panel)
        shot(window, "02-data.png")

    @when(lambda: True)
    def train() -> None:
        window.train_panel.epochs.setValue(args.epochs)
        window.train_panel.batch_size.setValue(32)
        window.session.plan.train.num_workers = 0
        window.start_training()

    @when(lambda: window.train_panel.plots.point_count("step_loss") >= 20)
    def training_live() -> None:
        shot(window, "03-training-live.png")

    @when(lambda: window.train_panel.run is None)
    def trained() -> None:
        shot(window, "04-training-done.png")

    @when(lambda: window.results_panel.evaluation is not None or bool(window.results_panel.error))
    def results() -> None:
        panel = window.results_panel
        window.tabs.setCurrentWidget(panel)
        app.processEvents()
        if panel.gallery.count():
            panel.gallery.setCurrentRow(0)  # the most confident mistake, with its top-5
        shot(window, "10-confusion-matrix.png")

    @when(lambda: True)
    def after_results() -> None:
        window.tabs.setCurrentWidget(window.tree_panel)
        shot(window, "05-layers-after-training.png")
        dialog = window.open_export()
        dialog.format.setCurrentIndex(dialog.format.findData("onnx"))
        dialog.path.setText(str(scratch / "digits-demo.onnx"))
        dialog.export_button.click()
        window._shots_dialog = dialog  # type: ignore[attr-defined]

    @when(lambda: not window._shots_dialog.is_busy() and window._shots_dialog.call is None)  # type: ignore[attr-defined]
    def exported() -> None:
        shot(window._shots_dialog, "06-export.png")  # type: ignore[attr-defined]
        window._shots_dialog.close()  # type: ignore[attr-defined]
        window.session.set_dirty(False)
        window.close()

    def tick() -> None:
        if time.monotonic() - started > 1200:
            print("gave up after 20 minutes", file=sys.stderr)
            app.exit(1)
            return
        if steps and steps[0][0]():
            steps.pop(0)[1]()
        if steps:
            QTimer.singleShot(200, tick)

    QTimer.singleShot(500, tick)
    code = app.exec()
    print(f"{len(saved)} screenshots in {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
