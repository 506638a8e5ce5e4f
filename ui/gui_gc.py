"""Garbage collection on the GUI thread only, while a window is open.

Trap: an automatic collection can start in any thread that allocates (a background evaluation building a
model); if it frees Qt wrappers there, it can deadlock with the GUI thread (seen: the GUI thread waiting for
the GIL in RunsPanel.refresh while a worker built a timm model). As pyqtgraph's GarbageCollector does,
automatic collection is off while a window is open and a timer collects on the GUI thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._threshold = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect)
        self._timer.start(interval_ms)

    def collect(self) -> None:
        count0, count1, count2 = gc.get_count()
        if count0 > self._threshold[0]:
            gc.collect(0)
            if count1 > self._threshold[1]:
                gc.collect(1)
                if count2 > self._threshold[2]:
                    gc.collect(2)

    def stop(self) -> None:
        """Automatic collection back as it was (the window closed)."""
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
