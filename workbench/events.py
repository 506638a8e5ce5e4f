"""A minimal observer: plain callbacks, called in the order they connected (napari's EventEmitter, shrunk).

The core emits these; a GUI adapter connects and re-emits them as its own signals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Event:
    """Callbacks connected to one named happening; ``emit`` calls each with the event's arguments."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback`` on every emit (once, however often it is connected); returns it."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        # A copy: a callback may disconnect itself (or connect another) while the event is emitted.
        for callback in list(self._callbacks):
            callback(*args)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {len(self._callbacks)} callback(s))"
