"""Benchmark the review loop: store latency, and the dock keeping up with 10 corrections/s.

Run: ``xvfb-run -a .venv/bin/python benchmarks/bench_review.py [--cells 200]``

Prints
- the store: per-correction durable write latency (``set_label`` returns after
  COMMIT with ``synchronous=FULL``), median / p95 / max, one process;
- the dock: a real napari viewer with ``--cells`` classified cells; every key
  press (through the dock's Qt shortcuts) is timed until the UI is updated
  (handler + event processing), at 10 presses per second, and how long after the
  last press every correction was on disk and shown as saved;
- the key presses needed to review all cells (one per cell).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_store(n: int) -> None:
    from napari_nucleus_ai.review.store import AnnotationStore

    with tempfile.TemporaryDirectory() as d:
        store = AnnotationStore(d, author="bench")
        times = []
        for i in range(n):
            t = time.perf_counter()
            store.set_label("img", i, "lymphocyte", predicted="monocyte", probability=0.5)
            times.append(time.perf_counter() - t)
        print(
            f"store set_label (durable), {n} writes: median {pct(times, 50):.2f} ms, "
            f"p95 {pct(times, 95):.2f} ms, max {pct(times, 100):.2f} ms"
        )


def bench_dock(n: int, rate: float) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.cells import to_features
    from napari_nucleus_ai.widgets.review import ReviewWidget
    from test_review_widget import classified_field

    img, labels, table = classified_field(n)
    viewer = napari.Viewer(show=True)
    viewer.add_image(img, rgb=True, scale=(0.25, 0.25), name="field")
    viewer.add_labels(labels, scale=(0.25, 0.25), features=to_features(table), name="cells")
    with tempfile.TemporaryDirectory() as d:
        w = ReviewWidget(viewer)
        w.open_outputs = False
        w.set_project(d)
        viewer.window.add_dock_widget(w, name="Review")
        app = QApplication.instance()
        for _ in range(20):
            app.processEvents()
        handler, total, behind, presses = [], [], [], 0
        cpu_handler, cpu_total = [], []
        period = 1.0 / rate
        start = time.perf_counter()
        wrong = set(range(1, n + 1, 5))  # every fifth cell needs a different class
        while w.queue.unreviewed and presses < 2 * n:
            due = start + presses * period
            while time.perf_counter() < due:
                app.processEvents()
                time.sleep(0.001)
            key = "4" if w.queue.current in wrong else "Space"  # 4 = unidentified
            t, c = time.perf_counter(), time.process_time()
            w._shortcuts[key].activated.emit()
            t1, c1 = time.perf_counter(), time.process_time()
            app.processEvents()  # repaint of the canvas, dock and table
            handler.append(t1 - t)
            total.append(time.perf_counter() - t)
            cpu_handler.append(c1 - c)
            cpu_total.append(time.process_time() - c)
            behind.append(max(0.0, time.perf_counter() - (due + period)))
            presses += 1
        t_last = time.perf_counter()
        while w.writer.pending or w._pending:
            app.processEvents()
            time.sleep(0.001)
        lag = time.perf_counter() - t_last
        w._refresh_slow()
        print(f"dock: {n} cells reviewed with {presses} key presses at {rate:g}/s")
        print(
            f"dock handler per key press (queue, store submit, table, camera, counts): "
            f"median {pct(handler, 50):.1f} ms, p95 {pct(handler, 95):.1f} ms, "
            f"max {pct(handler, 100):.1f} ms"
        )
        print(
            f"dock handler + repaint per key press: median {pct(total, 50):.1f} ms, "
            f"p95 {pct(total, 95):.1f} ms, max {pct(total, 100):.1f} ms"
        )
        print(
            f"CPU time per key press (this process, all threads; independent of other load): "
            f"handler median {pct(cpu_handler, 50):.1f} ms, handler + repaint median "
            f"{pct(cpu_total, 50):.1f} ms, p95 {pct(cpu_total, 95):.1f} ms"
        )
        wall = t_last - start
        print(
            f"wall time for the {presses} presses: {wall:.1f} s (ideal {presses / rate:.1f} s); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"presses handled after the next one was due: {sum(b > 0 for b in behind)} of {presses} "
            f"(worst {max(behind) * 1000:.0f} ms late)"
        )
        print(
            f"all corrections durable and shown saved {lag * 1000:.1f} ms after the last press; "
            f"saved {w.saved_count}"
        )
        assert len(w.store.labels(w.image_id)) == n
    viewer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    bench_store(500)
    bench_dock(args.cells, args.rate)


if __name__ == "__main__":
    main()
