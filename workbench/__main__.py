"""``python -m workbench`` is the ``workbench`` command."""

import sys

from workbench.cli.entry import run

if __name__ == "__main__":  # not when a tool walks the package and imports every module
    sys.exit(run())
