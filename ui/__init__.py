"""PySide6 views and adapters over the Qt-free ``workbench`` core."""
