"""What each layer sees: activation maps, class heatmaps, feature visualisation, probes by depth, the graph.

Qt-free; ``workbench look``, ``workbench graph`` and ``workbench probe-depth`` (workbench/cli/look.py, graph.py, probe_depth.py)
are the command-line face, ``ui/look_*.py`` the window's.
"""
