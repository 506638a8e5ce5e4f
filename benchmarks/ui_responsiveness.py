"""UI responsiveness: ticks on a big model's layer tree, and the UI thread while the worker trains.

    xvfb-run -s "-screen 0 1440x900x24" python benchmarks/ui_responsiveness.py --window-tick efficientnet_b7
    xvfb-run -s "-screen 0 1440x900x24" python benchmarks/ui_responsiveness.py --tree-model '' [--profile]

``--window-tick NAME`` opens NAME in the real window at 1440×900, expands the whole layer
tree, and clicks check boxes with the mouse (a block, a stage, the whole model; each
unticked, then ticked again): the time from the click to the window having processed
every event it caused — the tree, the totals, the groups table repainted — per click.
Add ``--profile`` for a cProfile of those clicks.

Without it: opens the demo in the real window at 1440×900, presses Start and records every
tick of a 10 ms QTimer for the whole run — preparing, the feature-cache epoch, the unfrozen
epochs, the end (the trained model adopted, the Results tab's evaluation) and one second after.
A tick that arrives late means the UI thread was blocked (slot work, plot redraws, the GIL held
by the trainer); the distribution of the gaps is printed, and the longest with where the run was.
``--stop-after --seconds N`` measures N seconds from the first step instead. ``--profile``: a
cProfile of the UI thread. Also times one checkbox tick on a large model's layer tree.
Prints figures; asserts nothing (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK_MS = 10


def measure_training(seconds: float, whole_run: bool = True, profile: bool = False) -> dict[str, Any]:
    """Ticks of a 10 ms QTimer while the demo trains in the real window.

    ``whole_run``: from the click on Start (preparing the data and model included) until the run has
    ended, its model was adopted and the Results tab evaluated it, plus a second; else ``seconds``
    from the first step, then Stop. Each gap is labelled with where the run was when it ended.
    """
    import cProfile
    import pstats

    from PySide6.QtCore import QSettings, QTimer

    from workbench_ui.app import create_application
    from workbench_ui.main_window import MainWindow

    app = create_application()
    slots = time_slots()
    scratch = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
    window = MainWindow(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat), runs_root=scratch / "runs")
    window.resize(1440, 900)
    window.show()
    window.open_demo()
    ticks: list[tuple[float, str]] = []
    state = {"phase": "loading", "t0": 0.0, "end": 0.0}
    profiler = cProfile.Profile() if profile else None

    def where() -> str:
        panel = window.train_panel
        if panel.run is None:
            return "after the run" if state["phase"] != "loading" else "loading"
        return panel.position.text().split(" · loss")[0][:40]

    def on_tick() -> None:
        now = time.perf_counter()
        if state["phase"] in ("measuring", "stopping", "draining"):
            ticks.append((now, where()))
            if not whole_run and state["phase"] == "measuring" and now - state["t0"] > seconds:
                window.train_panel.stop()
                state["phase"] = "stopping"

    def poll() -> None:
        if state["phase"] == "loading":
            if not window.is_busy() and window.data_panel.scan is not None and not window.data_panel.is_scanning():
                if profiler is not None:
                    profiler.enable()
                state["phase"], state["t0"] = "measuring", time.perf_counter()
                window.start_training()
                if not whole_run:
                    state["phase"] = "starting"
        elif state["phase"] == "starting":
            if window.train_panel.plots.curves["step_loss"].series.size > 0:
                state["phase"], state["t0"] = "measuring", time.perf_counter()
        elif state["phase"] in ("measuring", "stopping") and window.train_panel.run is None \
                and not window.results_panel.is_busy():
            state["phase"], state["end"] = "draining", time.perf_counter()
        elif state["phase"] == "draining" and time.perf_counter() - state["end"] > 1.0:
            if profiler is not None:
                profiler.disable()
            app.quit()
            return
        QTimer.singleShot(50, poll)

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(on_tick)
    timer.start()
    QTimer.singleShot(0, poll)
    app.exec()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    gaps = [((b - a) * 1000, label) for (a, _), (b, label) in zip(ticks, ticks[1:])]
    values = sorted(g for g, _ in gaps)
    steps = window.train_panel.plots.curves["step_loss"].series.size
    window.session.set_dirty(False)
    window.close()

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")

    edges = (20, 50, 100, 200, 500, float("inf"))
    histogram, low = {}, 0.0
    for high in edges:
        histogram[f"{low:g}-{high:g} ms"] = sum(low <= v < high for v in values)
        low = high
    return {
        "ticks": len(ticks),
        "measured_s": ticks[-1][0] - ticks[0][0] if len(ticks) > 1 else 0.0,
        "steps": steps,
        "max_gap_ms": values[-1] if values else float("nan"),
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
        "histogram": histogram,
        "worst": sorted(gaps, reverse=True)[:8],
        "gaps_over_100ms": sum(v > 100 for v in values),
        "slots": slots,
        "last_state": window.train_panel.last_state,
    }


def time_slots() -> dict[str, list[tuple[float, float]]]:
    """Wrap the window's slots that run during training: (wall ms, GUI-thread CPU ms) per call.

    A long wall time with little CPU means the thread waited (for a core, or for the GIL the trainer
    holds); a long CPU time is work of the slot itself.
    """
    from workbench_ui.plots import TrainingPlots
    from workbench_ui.results_panel import ResultsPanel
    from workbench_ui.runs_panel import RunsPanel
    from workbench_ui.train_panel import TrainPanel
    from workbench_ui.training_controller import TrainingController

    calls: dict[str, list[tuple[float, float]]] = {}
    targets = [(TrainingController, "start_training"), (TrainingController, "run_finished"), (TrainPanel, "_on_steps"),
               (TrainPanel, "_on_epoch"), (TrainPanel, "_on_state"), (TrainPanel, "start"),
               (TrainingPlots, "redraw"), (ResultsPanel, "set_evaluation"), (RunsPanel, "refresh")]
    for cls, name in targets:
        original = getattr(cls, name)

        def timed(*args: Any, _original: Any = original, _key: str = f"{cls.__name__}.{name}", **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                calls.setdefault(_key, []).append(((time.perf_counter() - wall) * 1000,
                                                   (time.thread_time() - cpu) * 1000))

        setattr(cls, name, timed)
    return calls


def measure_tree_tick(name: str) -> dict[str, float]:
    """Time QtLayerTreeModel.setData (plan edit + resolve + dataChanged) on a big model's tree."""
    from PySide6.QtCore import Qt

    from workbench.backbone import LoadRequest
    from workbench.plan import FinetunePlan
    from workbench.sources import load_backbone
    from workbench.workspace import Workspace
    from workbench_ui.qt_layer_tree import QtLayerTreeModel
    from workbench_ui.session import WorkbenchSession

    ws = Workspace.from_backbone(load_backbone(LoadRequest(name, source="timm")), FinetunePlan())
    session = WorkbenchSession()
    session.set_workspace(ws)
    model = QtLayerTreeModel(ws.tree, session.resolution, session.set_frozen)
    session.resolutionChanged.connect(lambda: model.set_resolution(session.resolution))
    paths = [n.path for n in ws.tree.nodes if n.depth == 2][:20] or [ws.tree.nodes[1].path]
    times = []
    for i, path in enumerate(paths * 2):
        state = Qt.CheckState.Unchecked if i < len(paths) else Qt.CheckState.Checked
        start = time.perf_counter()
        model.setData(model.index_of_path(path), state, Qt.ItemDataRole.CheckStateRole)
        times.append((time.perf_counter() - start) * 1000)
    return {"modules": len(ws.tree.nodes), "ticks": len(times), "max_ms": max(times),
            "median_ms": statistics.median(times)}


def measure_window_tick(name: str, profile: bool = False, rounds: int = 3,
                        large_only: bool = False) -> list[tuple[str, str, float, float]]:
    """Click check boxes of ``name``'s fully expanded tree in the real window; (path, action, wall ms, CPU ms)
    per click. CPU time (this process) varies less than wall time on a machine other work shares."""
    import cProfile
    import pstats

    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

    from workbench.backbone import LoadRequest
    from workbench.plan import FinetunePlan, ModelConfig
    from workbench.sources import load_backbone
    from workbench.workspace import Workspace
    from workbench_ui.app import create_application
    from workbench_ui.main_window import MainWindow

    app = create_application()
    scratch = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
    window = MainWindow(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat), runs_root=scratch / "runs")
    window.resize(1440, 900)
    window.show()
    ws = Workspace.from_backbone(load_backbone(LoadRequest(name, source="timm")), FinetunePlan(model=ModelConfig(name=name)))
    window.session.set_workspace(ws)
    view, model = window.tree_panel.view, window.tree_panel.model
    assert model is not None
    view.expandAll()
    for _ in range(3):
        app.processEvents()
    # Targets by size, from the middle of the model: blocks (8-40 modules), a stage (80-400), everything.
    def sized(low: int, high: int) -> list[str]:
        found = [n.path for n in ws.tree.nodes if n.param_count and low <= n.subtree_end - n.index <= high]
        return found[len(found) // 2:]

    targets = ([] if large_only else sized(8, 40)[:3]) + sized(80, 400)[:1] + [""]
    profiler = cProfile.Profile() if profile else None
    results = []
    for path in [t for _ in range(rounds) for t in targets]:
        for action in ("untick", "tick"):
            index = model.index_of_path(path)
            view.scrollTo(index)
            for _ in range(3):
                app.processEvents()
            option = QStyleOptionViewItem()
            option.rect = view.visualRect(index)
            option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
            box = view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, view)
            before = window.session.resolution.trainable_params
            if profiler is not None:
                profiler.enable()
            start, cpu = time.perf_counter(), time.process_time()
            QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, box.center())
            app.processEvents()  # the repaints the click caused
            elapsed, cpu = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
            if profiler is not None:
                profiler.disable()
            after = window.session.resolution
            if after.trainable_params == before or window.summary_bar.summary.text() != after.summary():
                raise RuntimeError(f"the click on {path or 'the root'} did not update the window")
            results.append((path or "(whole model)", action, elapsed, cpu))
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    window.session.set_dirty(False)
    window.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="with --stop-after: seconds to measure")
    parser.add_argument("--stop-after", action="store_true",
                        help="measure --seconds from the first step, then Stop (default: the whole run, Start to Results)")
    parser.add_argument("--tree-model", default="vit_base_patch16_224", help="timm model for the tick timing ('' to skip)")
    parser.add_argument("--window-tick", metavar="MODEL", help="time mouse clicks on MODEL's tree in the real window")
    parser.add_argument("--profile", action="store_true", help="cProfile the clicks (--window-tick) or the UI thread")
    parser.add_argument("--rounds", type=int, default=3, help="with --window-tick: clicks per target and direction")
    parser.add_argument("--large-only", action="store_true", help="with --window-tick: only the stage and the root")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))

    if args.window_tick:
        clicks = measure_window_tick(args.window_tick, args.profile, args.rounds, args.large_only)
        by_target: dict[str, list[tuple[float, float]]] = {}
        for path, _action, ms, cpu in clicks:
            by_target.setdefault(path, []).append((ms, cpu))
        for path, pairs in by_target.items():
            walls, cpus = [w for w, _ in pairs], [c for _, c in pairs]
            print(f"{path:<24} wall median {statistics.median(walls):7.1f} ms, max {max(walls):7.1f} ms; "
                  f"CPU median {statistics.median(cpus):7.1f} ms ({len(pairs)} clicks)")
        walls, cpus = [c[2] for c in clicks], [c[3] for c in clicks]
        print(f"{args.window_tick}: click to repainted window, wall median {statistics.median(walls):.1f} ms "
              f"(max {max(walls):.1f}), CPU median {statistics.median(cpus):.1f} ms over {len(walls)} clicks; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        return 0

    result = measure_training(args.seconds, not args.stop_after, args.profile)
    print(f"training: {result['steps']} steps, {result['ticks']} UI ticks in {result['measured_s']:.1f} s "
          f"(run ended: {result['last_state']}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"UI thread gap between {TICK_MS} ms ticks: median {result['p50']:.1f}, p90 {result['p90']:.1f}, "
          f"p99 {result['p99']:.1f}, p99.9 {result['p999']:.1f}, max {result['max_gap_ms']:.1f} ms; "
          f"{result['gaps_over_100ms']} gaps over 100 ms")
    print("gaps: " + ", ".join(f"{k}: {v}" for k, v in result["histogram"].items()))
    print("longest: " + "; ".join(f"{ms:.0f} ms ({label})" for ms, label in result["worst"]))
    for key, calls in sorted(result["slots"].items(), key=lambda kv: -max(w for w, _ in kv[1])):
        worst = max(calls)
        print(f"  {key:<28} {len(calls):5d} calls, longest {worst[0]:6.1f} ms wall ({worst[1]:5.1f} ms CPU), "
              f"max CPU {max(c for _, c in calls):5.1f} ms")
    if args.tree_model:
        tree = measure_tree_tick(args.tree_model)
        print(f"tree tick on {args.tree_model} ({tree['modules']} modules): max {tree['max_ms']:.1f} ms, "
              f"median {tree['median_ms']:.1f} ms over {tree['ticks']} ticks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
