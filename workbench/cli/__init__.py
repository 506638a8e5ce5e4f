"""The ``workbench`` command: one module per command, shared argument helpers in ``common``.

``main`` runs a command line in-process; ``run`` is the console script (``workbench.cli:run``).
"""

from workbench.cli.entry import main, run

__all__ = ["main", "run"]
