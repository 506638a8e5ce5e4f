"""PySide6 views and adapters over the Qt-free ``workbench`` core."""

import sys


def _keep_singletons_alive() -> None:
    """Trap: PySide6 6.12 on CPython 3.11 drops one reference to ``None`` on every call of a method that
    returns nothing (``QLabel.setText``, ``QPainter.drawRect``, ...). Measured: 20,000 ``setText`` calls in a
    bare QApplication abort with "none_dealloc: deallocating None"; the window loses ~250 references a
    second while training, so a long run would abort it. CPython 3.12+ makes ``None`` immortal; give it
    the same here: references that are never released (its refcount is the object's first field).

    The same happens to ``True``/``False`` while a tree view calls into its Python model (measured: a tick on
    the whole of a fully expanded resnet18 tree drops ~95 references to ``True``; the UI test suite
    then aborts with "bool_dealloc: deallocating True or False"), so they get the same treatment.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    import ctypes

    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40


_keep_singletons_alive()
