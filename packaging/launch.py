"""Entry script for the PyInstaller bundle: the same `workbench` command line as the console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # DataLoader worker processes re-enter this script in a frozen app
    from workbench.cli import main

    sys.exit(main())
