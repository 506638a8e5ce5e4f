"""``workbench open`` (and ``workbench`` without a command): the window, found through an entry point."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.errors import WorkbenchError

launched = False  # set once the window has run in this process (see ``entry.run``)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("open", help="open a project file (or a model file) in the window; `workbench FILE` is the same")
    p.add_argument("project", type=Path)
    p.set_defaults(run=lambda a: launch_gui(a, project=a.project))


def launch_gui(args: argparse.Namespace, project: Path | None = None, demo: bool = False) -> int:
    global launched
    # The core never imports the GUI: the window is found through the ``workbench.gui`` entry point.
    from importlib.metadata import entry_points

    found = sorted(entry_points(group="workbench.gui"), key=lambda ep: ep.name)
    if not found:
        raise WorkbenchError("no GUI is installed (pip install 'model-surgery-workbench[gui]'); "
                             "every action is available as a command, see workbench --help")
    launch = found[0].load()
    launched = True
    return int(launch(project=project, demo=demo))
