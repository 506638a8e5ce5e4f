"""Model Surgery Workbench: the Qt-free core.

Nothing in this package imports Qt; heavy packages (torch, timm, onnx) are
imported inside the functions that need them, so importing ``workbench`` is cheap.
"""

__version__ = "0.1.0"
