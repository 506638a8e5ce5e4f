"""The graph view on a big model: time until it is drawn, and the longest stall while panning and zooming.

    xvfb-run -s "-screen 0 1440x900x24" python benchmarks/bench_graph_view.py            # efficientnet_b7
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_graph_view.py --model resnet50

Builds the model (random weights: the graph does not depend on them), then times what the "Look inside"
tab does: the traced, collapsed graph with its shapes (workbench.looking.model_graph), igraph's layout, and
drawing it in the real GraphView until the first paint has happened. Then sends real wheel and drag events
(QTest) to the view shown at 1440×900 and records, per event, the time until it and its repaint are done.
The issue's budget: drawn in ≤ 2 s, no pan/zoom stall over 100 ms. Prints the figures and the load average
(other jobs on the machine inflate wall times; the CPU time of the drawing is what a quiet machine's wall
time would be, give or take). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="efficientnet_b7")
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()

    import timm
    import torch
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from workbench.looking.model_graph import lay_out, model_graph
    from workbench_ui.look_graph_view import GraphView

    app = QApplication.instance() or QApplication([])
    model = timm.create_model(args.model, pretrained=False).eval()
    size = tuple(model.pretrained_cfg["input_size"])
    modules = sum(1 for _ in model.modules())
    view = GraphView()
    view.resize(1440, 900)
    view.show()
    app.processEvents()

    start, start_cpu = time.perf_counter(), cpu()
    graph = model_graph(model, torch.randn(1, *size))
    traced = time.perf_counter()
    lay_out(graph)
    laid = time.perf_counter()
    view.show_graph(graph)
    view.viewport().repaint()
    app.processEvents()
    drawn, drawn_cpu = time.perf_counter(), cpu()
    print(f"{args.model} ({modules} modules, input {size}): {len(graph.nodes)} blocks drawn in "
          f"{drawn - start:.2f} s (graph and shapes {traced - start:.2f} s, layout {laid - traced:.2f} s, "
          f"drawing {drawn - laid:.2f} s); CPU time {drawn_cpu - start_cpu:.2f} s")

    stalls: list[float] = []
    centre = QPoint(720, 450)
    for i in range(args.events):
        t = time.perf_counter()
        if i % 3 == 0:
            delta = 120 if (i // 3) % 4 < 2 else -120
            event = QWheelEvent(QPointF(centre), QPointF(view.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, delta),
                                Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                                False)
            app.sendEvent(view.viewport(), event)
        else:
            step = QPoint(0, 80 if i % 2 else -60)
            QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
            QTest.mouseMove(view.viewport(), centre + step)
            QTest.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                               centre + step)
        view.viewport().repaint()
        app.processEvents()
        stalls.append((time.perf_counter() - t) * 1000)
    stalls.sort()
    print(f"pan/zoom: {len(stalls)} events, median {stalls[len(stalls) // 2]:.1f} ms, "
          f"max {stalls[-1]:.1f} ms, over 100 ms: {sum(s > 100 for s in stalls)}")
    print(f"load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} threads, "
          f"platform {app.platformName()}")


if __name__ == "__main__":
    main()
