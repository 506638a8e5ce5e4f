"""Files dropped onto the window: local files only; the first one opens (a project, a model file)."""

from __future__ import annotations

from PySide6.QtGui import QDragEnterEvent, QDropEvent


def accepts_drag(event: QDragEnterEvent) -> bool:
    """Accept a drag of local files (and nothing else: no web links, no text)."""
    urls = event.mimeData().urls()
    if urls and all(u.isLocalFile() for u in urls):
        event.acceptProposedAction()
        return True
    return False


def dropped_path(event: QDropEvent) -> str | None:
    """The first dropped file's path (the drop accepted), or None when nothing was dropped."""
    urls = event.mimeData().urls()
    if not urls:
        return None
    event.acceptProposedAction()
    return urls[0].toLocalFile()
