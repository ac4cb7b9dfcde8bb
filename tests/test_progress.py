"""Core generators and the UI helper that runs them."""

from napari_nucleus_ai.progress import Progress, run_sync


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
    worker = start_work(_work, 5, on_result=results.append)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        pass
    assert results == [50]

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
