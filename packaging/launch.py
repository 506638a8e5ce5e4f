"""Entry script for the PyInstaller bundle: the same `workbench` command line as the console script.

With ``WORKBENCH_BUNDLE_PROBE=report.json`` in the environment the window closes itself once it is
usable (background start-up done, the demo or project loaded) and writes what it showed to that
file: ``packaging/check_bundle.py`` uses it to check a built bundle, like a person would look.
"""

import multiprocessing
import os
import sys
import time

PROBE_TIMEOUT_S = 600  # a window not usable by then is a failed check, not a hang


def _install_probe(report_path: str) -> None:
    import json

    import workbench_ui.app as app

    build_window = app.build_window

    def probed_build_window(project=None, demo=False):
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication, QMessageBox

        window = build_window(project, demo)
        started = time.monotonic()
        timer = QTimer(window)

        def write(report: dict) -> None:
            with open(report_path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
            os.replace(report_path + ".tmp", report_path)

        def poll() -> None:
            session = window.session
            dialogs = [w.text() for w in QApplication.topLevelWidgets()
                       if isinstance(w, QMessageBox) and w.isVisible()]
            ready = (not window.is_busy() and window.model_panel.load_button.isEnabled()
                     and (session.workspace is not None or not (project or demo)))
            timed_out = time.monotonic() - started > PROBE_TIMEOUT_S
            if not (ready or dialogs or timed_out):
                return
            timer.stop()
            from workbench.plugins import registry

            ws = session.workspace
            report = {
                "usable_at": time.time(),  # wall clock: the checker measures launch -> usable from it
                "usable": bool(ready and not dialogs),
                "timed_out": timed_out and not ready,
                "dialogs": dialogs,
                "title": window.windowTitle(),
                "model": ws.plan.model.name if ws is not None else None,
                "project_path": str(session.project_path) if session.project_path is not None else None,
                "plugin_failures": [str(f) for f in registry().failures],
                "log": [window.train_panel.log.item(i).text() for i in range(window.train_panel.log.count())],
            }
            for dialog in QApplication.topLevelWidgets():  # an error dialog would keep the window open
                if isinstance(dialog, QMessageBox) and dialog.isVisible():
                    dialog.reject()
            report["closed"] = window.close()
            write(report)
            # Whatever the close did, the process ends: a dialog raised meanwhile is in the report's problems.
            QTimer.singleShot(0, QApplication.quit)

        timer.timeout.connect(poll)
        timer.start(100)
        return window

    app.build_window = probed_build_window


if __name__ == "__main__":
    multiprocessing.freeze_support()  # DataLoader worker processes re-enter this script in a frozen app
    probe = os.environ.get("WORKBENCH_BUNDLE_PROBE")
    if probe:
        _install_probe(probe)
    from workbench.cli import run  # what the `workbench` console script runs

    sys.exit(run())
