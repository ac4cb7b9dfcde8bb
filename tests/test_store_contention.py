"""The corrections store is fair under contention, and loses nothing under SIGKILL.

Two and four writer processes (``spawn``) write corrections into one store as fast
as they can while a CPU-burning process loads the machine. Every writer must
save at least once in every 1-s window (no writer starved), none may see
"database is locked", and after one writer is killed with SIGKILL mid-run every
correction it reported as saved must be in the store. A replacement writer
opens the store while the others hammer it (opening must not need the write lock).
The harness is ``_store_contention.py`` (shared with ``benchmarks/bench_store.py``).
"""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from _store_contention import run_contention
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.review.store import STORE_NAME, AnnotationStore


def _hold_write_lock(folder):
    """Another connection (as another process would) holding the write lock."""
    con = sqlite3.connect(folder / STORE_NAME, isolation_level=None, timeout=0)
    con.execute("BEGIN IMMEDIATE")
    return con


def test_open_existing_store_needs_no_write_lock(tmp_path):
    AnnotationStore(tmp_path).set_label("img", 1, "a")
    con = _hold_write_lock(tmp_path)
    try:
        t = time.monotonic()
        store = AnnotationStore(tmp_path, timeout=5)  # only reads: not blocked by the writer
        assert time.monotonic() - t < 2
        assert store.labels("img") == {1: "a"}
    finally:
        con.rollback()
        con.close()
    store.set_label("img", 2, "b")
    assert store.labels("img") == {1: "a", 2: "b"}


def test_wait_for_lock_is_bounded_with_one_line_error(tmp_path):
    store = AnnotationStore(tmp_path, timeout=0.5)
    con = _hold_write_lock(tmp_path)
    try:
        t = time.monotonic()
        with pytest.raises(InputError) as e:
            store.set_label("img", 1, "a")
        assert 0.4 < time.monotonic() - t < 3
    finally:
        con.rollback()
        con.close()
    msg = str(e.value)
    assert STORE_NAME in msg and "\n" not in msg and "within 0.5 s" in msg
    # the store is still usable once the other writer let go
    assert store.set_label("img", 1, "a").label == "a"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("n_writers", [2, 4])
def test_every_writer_progresses_each_second_and_nothing_is_lost(tmp_path, n_writers):
    run = run_contention(tmp_path, n_writers, duration=3.0, burners=1, kill_at=1.5, seed=n_writers)
    for w in run.writers:
        assert w.errors == [], f"{w.author}: {w.errors[:3]}"
        # writer 0 counts up to its kill (whole windows only)
        stop = run.stop if w.killed_at is None else w.killed_at
        assert w.empty_windows(run.start, stop) == [], (
            f"{w.author} saved nothing in a 1-s window; gaps {w.gaps(run.start, stop).max():.2f} s"
        )
        assert w.saves, f"{w.author} saved nothing"
    # the replacement opened while the others wrote at full speed, and got its turn
    assert run.replacement is not None
    assert run.replacement.errors == [], run.replacement.errors[:3]
    assert len(run.replacement.saves) >= 5
    assert run.integrity == "ok"
    assert run.lost == [], f"{len(run.lost)} corrections reported saved were lost"
    assert sum(len(w.saves) for w in run.writers) > 10 * n_writers
