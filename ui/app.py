"""``run_app``: the entry point behind ``workbench``, ``workbench open X.toml`` and ``workbench demo``.

The window is shown before torch or timm are imported; they load in a worker while the
status bar shows a busy indicator.
"""

from __future__ import annotations

import sys
from pathlib import Path


def create_application(argv: list[str] | None = None) -> "QApplication":  # noqa: F821
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("Model Surgery Workbench")
    app.setOrganizationName("ModelSurgeryWorkbench")
    app.setDesktopFileName("model-surgery-workbench")
    icon = Path(__file__).resolve().parent.parent / "packaging" / "workbench.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    # No application style sheet: it would slow every item view's painting (see workbench_ui.look).
    return app  # type: ignore[return-value]


def build_window(project: Path | None = None, demo: bool = False) -> "MainWindow":  # noqa: F821
    """Show the window and queue the background work (heavy imports, then the project or demo)."""
    from PySide6.QtCore import QTimer

    from workbench_ui.main_window import MainWindow

    window = MainWindow()
    window.show()

    def after_shown() -> None:
        window.start_background_init()
        if project is not None:
            window.open_path(str(project))
        elif demo:
            window.open_demo()

    QTimer.singleShot(0, after_shown)
    return window


def launch(project: Path | None = None, demo: bool = False) -> int:
    """The ``workbench.gui`` entry point: a clear error when the Qt binding is missing, else the window."""
    from workbench.errors import WorkbenchError

    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as exc:
        raise WorkbenchError(f"the window needs the GUI extras (pip install 'model-surgery-workbench[gui]'): "
                             f"{exc}") from None
    return run_app(project=project, demo=demo)


def run_app(project: Path | None = None, demo: bool = False) -> int:
    app = create_application()
    window = build_window(project, demo)
    code = app.exec()
    del window
    return int(code)
