"""The background worker: every value, every failure (a RuntimeError too) and the end reach the GUI thread."""

from __future__ import annotations

from workbench.training.reports import StateReport, StepReport
from workbench_ui.workers import BackgroundCall, GeneratorThread, batched_steps


def _step(n: int) -> StepReport:
    return StepReport(0, n, 10, n, 1.0 / n, 0.5, {"head": 1e-3}, 100.0, 1.0)


def test_a_runtime_error_in_the_generator_reaches_failed_and_finished(qtbot):
    # torch raises RuntimeError for most training failures (superqt's GeneratorWorker drops those silently).
    def reports():
        yield 1
        yield 2
        raise RuntimeError("Expected more than 1 value per channel when training")

    run = GeneratorThread(reports, "test")
    values, failures = [], []
    run.yielded.connect(values.append)
    run.failed.connect(lambda message, detail: failures.append((message, detail)))
    with qtbot.waitSignal(run.finished, timeout=10_000):
        run.start()
    assert values == [1, 2]
    assert failures[0][0] == "RuntimeError: Expected more than 1 value per channel when training"
    assert "Traceback" in failures[0][1] and len(failures) == 1
    assert run.wait(5000) and not run.is_running()


def test_background_call_succeeds_or_fails_once(qtbot):
    ok = BackgroundCall(lambda: 6 * 7, "answer")
    results = []
    ok.succeeded.connect(results.append)
    with qtbot.waitSignal(ok.finished, timeout=10_000):
        ok.start()
    bad = BackgroundCall(lambda: 1 / 0, "divide")
    failures = []
    bad.failed.connect(lambda message, _detail: failures.append(message))
    with qtbot.waitSignal(bad.finished, timeout=10_000):
        bad.start()
    assert results == [42] and failures == ["ZeroDivisionError: division by zero"]


def test_step_reports_are_batched_and_none_is_lost_before_a_failure():
    def reports():
        yield from (_step(n) for n in range(1, 4))
        yield StateReport("notice", "a message")
        yield from (_step(n) for n in range(4, 6))
        raise RuntimeError("boom")

    out = []
    try:
        for item in batched_steps(reports(), seconds=1e9):  # never flushed by time: only by order
            out.append(item)
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the failure must be raised after the pending steps")
    assert [[s.batch for s in x] if isinstance(x, list) else x.kind for x in out] == [[1, 2, 3], "notice", [4, 5]]


def test_waiting_on_the_gui_thread_for_a_running_call_returns_when_it_ends(qtbot):
    # Closing the window waits for its loads on the GUI thread, with no event loop running: the thread must end
    # by itself (a quit queued to the GUI thread was never delivered, and the wait never returned).
    import threading

    started = threading.Event()

    def work() -> str:
        started.set()
        threading.Event().wait(0.2)
        return "done"

    call = BackgroundCall(work, "test")
    call.start()
    assert started.wait(10)
    assert call.wait(30_000)
    results = []
    call.succeeded.connect(results.append)
    assert call.is_running()  # running until its result and its end reach the GUI thread
    with qtbot.waitSignal(call.finished, timeout=10_000):
        pass
    assert results == ["done"] and not call.is_running()
