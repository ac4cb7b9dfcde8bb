"""Core generators and the UI helper that runs them."""

from napari_nucleus_ai.core.progress import Progress, run_sync


def _work(n, fail=False):
    for i in range(n):
        yield Progress(i + 1, n, f"step {i + 1}")
    if fail:
        raise ValueError("bad input")
    return n * 10


def test_run_sync_reports_progress_and_returns():
    seen = []
    assert run_sync(_work(3), seen.append) == 30
    assert [p.done for p in seen] == [1, 2, 3]
    assert seen[-1].fraction == 1.0


def test_start_work_sync_calls_back(qapp):
    from napari_nucleus_ai.widgets._worker import start_work

    results, progress, errors, finished = [], [], [], []
    work = start_work(
        _work,
        4,
        on_result=results.append,
        on_progress=progress.append,
        on_finish=lambda: finished.append(True),
        sync=True,
    )
    assert results == [40] and len(progress) == 4 and finished == [True]
    assert work.result == 40
    start_work(_work, 2, fail=True, on_error=errors.append, sync=True)
    assert isinstance(errors[0], ValueError)


def test_start_work_threaded_result_and_cancel(qtbot):
    import time

    from napari_nucleus_ai.widgets._worker import start_work

    results = []
    start_work(_work, 5, on_result=results.append)
    # not waitSignal(worker.finished): a 5-step worker can finish before it connects
    qtbot.waitUntil(lambda: results == [50], timeout=10_000)

    def _slow():
        for i in range(1000):
            time.sleep(0.01)
            yield Progress(i, 1000)
        return "finished"

    slow_results = []
    worker = start_work(_slow, on_result=slow_results.append)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.quit()
    assert slow_results == []  # cancelled: no result layers are added


def test_freeze_gc_while_the_worker_runs(qtbot):
    """freeze_gc keeps the objects that existed at the start out of full collections while
    the worker runs (a full pass over napari's heap froze the UI), and undoes it afterwards,
    also when the work is cancelled or fails."""
    import gc
    import time

    from napari_nucleus_ai.widgets._worker import start_work

    assert gc.get_freeze_count() == 0
    seen, finished = [], []

    def _probe(n=3, fail=False):
        for i in range(n):
            seen.append(gc.get_freeze_count())
            time.sleep(0.01)
            yield Progress(i, n)
        if fail:
            raise ValueError("bad")
        return "ok"

    def run(cancel=False, **kw):
        seen.clear()
        finished.clear()
        worker = start_work(_probe, on_finish=lambda: finished.append(True), **kw)
        if cancel:
            qtbot.waitUntil(lambda: len(seen) > 0, timeout=10_000)
            worker.quit()
        qtbot.waitUntil(lambda: finished == [True], timeout=10_000)  # _finish has run

    run(freeze_gc=True)
    assert min(seen) > 0 and gc.get_freeze_count() == 0
    with qtbot.capture_exceptions():  # superqt re-raises the worker's error in the loop
        run(fail=True, freeze_gc=True, on_error=lambda e: None)
    assert min(seen) > 0 and gc.get_freeze_count() == 0
    run(cancel=True, n=1000, freeze_gc=True)
    assert len(seen) < 1000 and gc.get_freeze_count() == 0
    run()  # off by default
    assert max(seen) == 0


def test_run_in_steps_lets_the_event_loop_run_between_steps(qtbot):
    """Each step is its own event-loop turn: a timer (like a repaint or the user's input)
    gets serviced between two long steps instead of after the whole chain."""
    import time

    from qtpy.QtCore import QTimer

    from napari_nucleus_ai.widgets._worker import run_in_steps

    ticks, at_step = [0], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    timer.start(5)

    def step():
        at_step.append(ticks[0])
        time.sleep(0.05)  # a layer being added

    try:
        run_in_steps([step, step, step], sync=False)
        qtbot.waitUntil(lambda: len(at_step) == 3, timeout=5_000)
    finally:
        timer.stop()
    assert at_step[0] < at_step[1] < at_step[2], at_step
