"""A scripted walk through every dock on real files, in a user's order and in the wrong order.

Opens a BCCD smear field (JPEG), a ColiCoords dSTORM table (ThunderSTORM CSV) and the
synthetic pyramidal slide in a 1366 x 768 napari window; runs each dock's task (segment,
classify, review, render, load a region, track, batch...) and also presses buttons
before their inputs exist (and loads a whole level of a lazy 60000 x 60000 slide, which
must be refused); takes a screenshot of the whole window after each step into
``--out``; and measures event-loop stalls: a 5 ms Qt timer on the main thread records
the longest gap between its ticks during each step. napari's own stall for adding a
Labels layer of the field's size (and of a 4096 x 4096 one) is measured in the same
run, as the yardstick.

Run (screenshots go to a folder outside the repository)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/gui_walk.py \\
        --out /tmp/gui_walk

``--only smear`` runs napari's yardsticks and the smear field's segmentation and
classification only, then adds the Classifier's two result layers again directly with
napari (napari's own cost of those very layers); ``--sample`` names, for each step, what
the GUI thread ran during its longest stall (a thread samples its Python stack).

Needs ``../shared/data``. Corrections go to a project folder inside ``--out``, never
beside the shared data. The demo models are trained on first use (minutes), then cached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PLUGIN = "napari-nucleus-ai"


class StallMeter:
    """Longest gap between the ticks of a 5 ms timer on the GUI thread, per measured step.

    With ``sample``, a thread samples the GUI thread's Python stack every 2 ms, and
    :meth:`where` tells which of our / napari's functions the longest gap was spent in.
    """

    def __init__(self, interval_ms: int = 5, sample: bool = False):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.last = time.perf_counter()
        self.longest = 0.0
        self.window = (self.last, self.last)
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        if sample:
            import threading

            self._main = threading.main_thread().ident
            threading.Thread(target=self._sample, daemon=True).start()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if now - self.last > self.longest:
            self.longest = now - self.last
            self.window = (self.last, now)
        self.last = now

    def _sample(self) -> None:
        def stack(frame, depth=60):
            names = []
            while frame is not None and len(names) < depth:
                code = frame.f_code
                names.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            return tuple(names)

        while True:
            frames = sys._current_frames()
            main = stack(frames.pop(self._main, None))
            others = tuple(stack(f, 6) for f in frames.values())
            self.samples.append((time.perf_counter(), main, others))
            del self.samples[:-20000]
            time.sleep(0.002)

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0
        self.window = (self.last, self.last)

    def where(self, top: int = 12) -> list[str]:
        """The functions most often on the GUI thread's stack during the longest gap; and,
        when the sampler itself was held off (the GIL held by one call), what the other
        threads ran on both sides of its longest pause."""
        from collections import Counter

        start, end = self.window
        inside = [s for s in list(self.samples) if start - 0.02 <= s[0] <= end + 0.02]
        counts = Counter(f.rsplit(":", 1)[0] for _, main, _ in inside for f in set(main))
        skip = ("gui_walk.py", "threading.py")
        named = [(f, n) for f, n in counts.most_common() if not f.startswith(skip)]
        out = [f"{n}/{len(inside)} {f}" for f, n in named[:top]]
        if len(inside) > 1:
            gaps = [(b[0] - a[0], a, b) for a, b in zip(inside, inside[1:], strict=False)]
            gap, before, after = max(gaps, key=lambda g: g[0])
            out.append(f"sampler held off {gap * 1000:.0f} ms; main before: {before[1][:4]}")
            out += [f"other before: {o[:5]}" for o in before[2] if "threading.py:wait" not in o[0]]
            out += [f"other after: {o[:5]}" for o in after[2] if "threading.py:wait" not in o[0]]
        return out

    def stall_ms(self) -> float:
        """The longest gap since :meth:`reset`, including the one still open, in ms."""
        self._tick()
        return max(0.0, self.longest - self.interval) * 1000


def pump(seconds: float = 0.2) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def wait_idle(dock, timeout: float = 900.0) -> None:
    """Run the event loop until the dock's job (if any) has finished."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        pump(0.05)
        worker = getattr(dock, "worker", None)
        running = getattr(worker, "is_running", False)
        if not getattr(dock, "busy", False) and not running:
            break
    pump(0.3)


class Walk:
    def __init__(self, out: Path, sample: bool = False):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.viewer = None
        self.new_viewer()
        self.meter = StallMeter(sample=sample)
        self.rows: list[dict] = []
        self.shots: list[str] = []
        self.errors: list[str] = []
        self.n = 0
        pump(0.5)

    def new_viewer(self):
        """A fresh 1366 x 768 viewer for the next part of the walk (the last one closed)."""
        import napari

        if self.viewer is not None:
            self.viewer.close()
            pump(0.3)
        self.viewer = napari.Viewer(title="gui walk")
        self.viewer.window._qt_window.resize(1366, 768)
        self.viewer.window._qt_window.move(0, 0)
        pump(0.3)
        return self.viewer

    def dock(self, name: str):
        return self.viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]

    def step(self, name: str, fn, *, dock=None, shot: bool = True, napari_own: bool = False):
        """Run ``fn``, wait for the dock's job, record the stall and a screenshot."""
        self.meter.reset()
        t0 = time.perf_counter()
        error = None
        try:
            fn()
            if dock is not None:
                wait_idle(dock)
            else:
                pump(0.2)
        except Exception as e:  # noqa: BLE001 - the walk records every Python error
            error = f"{type(e).__name__}: {e}"
            self.errors.append(f"{name}: {error}\n{traceback.format_exc()}")
        stall = self.meter.stall_ms()
        row = {"step": name, "seconds": round(time.perf_counter() - t0, 2),
               "longest_stall_ms": round(stall, 1), "napari": napari_own, "error": error}  # fmt: skip
        status = getattr(dock, "status", None) if dock is not None else None
        if status is not None:
            text = status.text() if hasattr(status, "text") else status.value
            row["status"] = str(text)[:160]
        if self.meter.samples:
            row["where"] = self.meter.where()
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        if shot:
            self.n += 1
            slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
            path = self.out / f"{self.n:02d}_{slug}.png"
            self.viewer.screenshot(str(path), canvas_only=False, flash=False)
            self.shots.append(path.name)
        return row

    def close_docks(self) -> None:
        self.viewer.window.remove_dock_widget("all")
        pump(0.2)


def open_classifier(w: Walk):
    """The Classifier dock, opened as its own step: the dock starts importing torch in the
    background (``widgets._worker.warm_up``); the step lasts until that import is done, so
    its stall is recorded here, where a user picks a model, and not in the classification."""
    from napari_nucleus_ai.widgets import _worker

    box = []

    def open_and_wait():
        box.append(w.dock("Classifier"))
        end = time.perf_counter() + 120
        while any(t.is_alive() for t in _worker._WARMING) and time.perf_counter() < end:
            pump(0.05)

    w.step("open Classifier dock (torch imported in the background)", open_and_wait, shot=False)
    return box[0]


def run(out: Path, only: str = "all", sample: bool = False) -> int:
    import faulthandler

    faulthandler.enable()

    from napari_nucleus_ai.widgets._compat import set_view

    field = DATA / "smear" / "bccd" / "JPEGImages" / "BloodImage_00001.jpg"
    locs = DATA / "smlm" / "colicoords" / "01_storm.csv"
    if not field.exists() or not locs.exists():
        print(f"needs the real data in {DATA}", file=sys.stderr)
        return 2
    w = Walk(out, sample=sample)
    v = w.viewer

    # -- napari's own stalls: the yardstick ------------------------------------------------
    lab = np.random.default_rng(0).integers(0, 40, (480, 640)).astype(np.int32)
    v.add_labels(lab, name="warm-up")  # first Labels layer: shader compilation, once
    pump(0.5)
    v.layers.remove("warm-up")
    w.step("napari add_labels 640x480", lambda: v.add_labels(lab, name="tmp"), shot=False,
           napari_own=True)  # fmt: skip
    v.layers.remove("tmp")
    big = np.random.default_rng(0).integers(0, 400, (4096, 4096)).astype(np.int32)
    w.step("napari add_labels 4096x4096", lambda: v.add_labels(big, name="tmp"), shot=False,
           napari_own=True)  # fmt: skip
    v.layers.remove("tmp")
    big = None  # free it

    # -- the wrong order first: docks before any layer -----------------------------------------
    if only == "all":
        review = w.dock("Review")
        review.set_project(str(out / "project"))
        classifier = open_classifier(w)
        w.step("wrong order: review and classifier before any image", lambda: None)
        assert not classifier.run_btn.enabled, "Classify must wait for a Labels layer"
        # a closed dock stays connected to its viewer (napari keeps the widget): start afresh
        v = w.new_viewer()

    # -- smear field: segment, classify, review (the user's order) --------------------------------
    w.step("open smear field", lambda: v.open(str(field), plugin=PLUGIN), napari_own=True,
           shot=False)  # fmt: skip
    v.reset_view()
    seg = w.dock("Segmentation")
    w.step("segment wbc", seg.run, dock=seg)
    classifier = open_classifier(w)
    classifier.model.value = "demo: smear-wbc"
    w.step("classify smear-wbc", classifier.run, dock=classifier, shot=False)
    classifier.native.ensureWidgetVisible(classifier.legend.native)  # the legend on show
    w.step("classifier legend", lambda: None)
    if only == "smear":
        _napari_own_result(w, v, classifier)
        return _summary(w, out)
    review = w.dock("Review")
    review.set_project(str(out / "project"))

    def confirm_three():
        for _ in range(3):
            review.confirm()
        review.flush()
        review.refresh_marks()

    w.step("review confirm 3 cells", confirm_three)
    # the marker must sit on the current cell (the cells' frame is the layer's)
    if review.queue is None:
        raise RuntimeError("the Review dock has no classified cells: the walk cannot go on")
    cell = review.queue.current
    ys, xs = np.nonzero(np.asarray(review.layer.data) == cell)
    square = np.asarray(v.layers["current cell"].translate)
    if not np.allclose(square, (ys.mean(), xs.mean()), atol=1.0):
        w.errors.append(f"current-cell square at {square}, cell {cell} at {(ys.mean(), xs.mean())}")
    undo_layer = v.layers[f"{field.stem} wbc"]

    def fill_and_undo():
        v.layers.selection.active = undo_layer
        first = int(undo_layer.features["label"].iloc[0])
        ys, xs = np.nonzero(np.asarray(undo_layer.data) == first)
        undo_layer.fill((int(ys[0]), int(xs[0])), 0)
        pump(0.6)
        undo_layer.undo()
        pump(0.6)
        if first not in set(undo_layer.features["label"]):
            w.errors.append("undo after fill did not bring the row back")

    w.step("segmentation fill then undo", fill_and_undo, shot=False)
    v = w.new_viewer()

    # -- localizations: open, render, wrong filters, ROI ----------------------------------------
    loc = w.dock("Localizations")
    w.step("open localizations", lambda: loc.open_file(path=str(locs)), dock=loc, shot=False)
    w.step("render localizations", loc.render, dock=loc)

    def empty_filters():
        loc.first_frame.value, loc.last_frame.value = 500, 100
        loc.render()

    w.step("wrong filters: first 500 last 100", empty_filters, dock=loc)
    loc.first_frame.value = loc.last_frame.value = loc.first_frame.min  # off
    w.step("roi shapes layer", lambda: v.add_shapes(name="ROI"), shot=False)
    if str(v.layers["ROI"].units[-1]) != "nanometer" or not getattr(v.layers, "units", None):
        w.errors.append("the ROI layer is not in nm, or the viewer lost its units")
    layer = loc._current()
    table = layer.metadata["localizations"]  # zoom into a cell, where the molecules are
    centre = np.array([table["y_nm"].median(), table["x_nm"].median()])
    near = table.iloc[
        int(np.argmin(np.hypot(table["y_nm"] - centre[0], table["x_nm"] - centre[1])))
    ]
    centre = np.array([near["y_nm"], near["x_nm"]])
    w.step("zoom into the render", lambda: set_view(v, layer, center=centre, zoom=1 / 8.0),
           dock=loc)  # fmt: skip
    pump(1.0)  # the background zoom re-render lands
    wait_idle(loc)
    w.step("untick re-render on zoom", lambda: setattr(loc.zoom, "value", False), dock=loc,
           shot=False)  # fmt: skip
    if [ly for ly in v.layers if "zoom_of" in (ly.metadata or {})]:
        w.errors.append("a stale [zoom] layer is left")
    v = w.new_viewer()

    # -- slide: the synthetic pyramid, load what is on screen ------------------------------------
    v.open_sample(PLUGIN, "smear_slide")
    pump(0.5)
    slide = w.dock("Slide")
    img = slide.layer
    shape = img.data[0].shape
    set_view(v, img, center=(shape[0] * img.scale[0] / 2, shape[1] * img.scale[1] / 2),
             zoom=1 / float(img.scale[-1]))  # fmt: skip
    pump(0.3)
    slide._update_view()
    w.step("slide load visible at 1:1", slide.load, dock=slide)
    # the wrong order: a whole level 0 of a 60000 x 60000 RGB slide (10 GiB, lazy) is refused
    import dask.array as da

    huge = da.zeros((60_000, 60_000, 3), dtype=np.uint8, chunks=(4096, 4096, 3))
    v.add_image([huge, huge[::16, ::16]], multiscale=True, rgb=True, name="huge slide",
                scale=tuple(img.scale[-2:]), units=tuple(img.units[-2:]),
                contrast_limits=(0, 255))  # fmt: skip
    pump(0.3)
    slide.layer_box.setCurrentText("huge slide")
    slide.region.setCurrentText("whole level")
    slide.level.setValue(0)
    row = w.step("slide whole level 0 of a 60000 x 60000 slide", slide.load, dock=slide)
    if "too large" not in row.get("status", "") or "loading" in row.get("status", ""):
        w.errors.append(f"a refused level left the status at {row.get('status')!r}")
    v = w.new_viewer()

    # -- infection: the synthetic time-lapse ----------------------------------------------------
    v.open_sample(PLUGIN, "infection_timelapse")
    pump(0.3)
    inf = w.dock("Infection")

    def track_items():
        box = inf.track.native
        return [box.itemText(i) for i in range(box.count())]

    if track_items() != ["no tracks yet"]:
        w.errors.append(f"the Infection track box shows {track_items()} before a run")
    w.step("infection track and score", inf.run, dock=inf)
    if not track_items() or not all(t.startswith("track ") for t in track_items()):
        w.errors.append(f"the Infection track box shows {track_items()[:3]} after the run")
    v = w.new_viewer()

    # -- generative and batch without their inputs (wrong order), settings ---------------------
    v.open(str(field), plugin=PLUGIN)
    gen = w.dock("Generative")
    w.step("generative without a model", lambda: gen.run_counterfactual(), dock=gen)
    w.close_docks()
    batch = w.dock("Batch")
    w.step("batch dock without an output folder", lambda: None, dock=batch)
    if batch.run_btn.enabled or "output folder" not in batch.run_btn.tooltip:
        w.errors.append("Batch's Run is enabled without an output folder")
    batch.out.value = out / "batch"
    batch.workers.value = 1
    w.step("batch run on the field", batch.run, dock=batch)
    w.close_docks()

    return _summary(w, out)


def _napari_own_result(w: Walk, v, classifier) -> None:
    """napari's own cost of the Classifier's result layers, added directly (the same data,
    colours, features), each in its own measured step."""
    classes = next(ly for ly in v.layers if ly.name.endswith(" classes"))
    unc = v.layers["uncertainty"]
    w.step("napari add_labels of the classes layer (same colormap, features)",
           lambda: v.add_labels(np.asarray(classes.data), name="tmp", colormap=classes.colormap,
                                features=classes.features, scale=classes.scale,
                                opacity=0.6),
           shot=False, napari_own=True)  # fmt: skip
    v.layers.remove("tmp")
    w.step("napari add_image of the uncertainty image",
           lambda: v.add_image(np.asarray(unc.data), name="tmp", colormap="inferno",
                               contrast_limits=(0.0, 1.0), scale=unc.scale, visible=False),
           shot=False, napari_own=True)  # fmt: skip
    v.layers.remove("tmp")


def _summary(w: Walk, out: Path) -> int:
    """Write ``walk.json`` (every step, the longest stalls), close the viewers; 1 on errors."""
    import napari

    v = w.viewer
    napari_rows = [r for r in w.rows if r["napari"]]
    dock_rows = [r for r in w.rows if not r["napari"]]
    summary = {"steps": w.rows, "screenshots": w.shots, "errors": w.errors,
               "napari_longest_ms": max(r["longest_stall_ms"] for r in napari_rows),
               "docks_longest_ms": max(r["longest_stall_ms"] for r in dock_rows)}  # fmt: skip
    (out / "walk.json").write_text(json.dumps(summary, indent=2))
    for e in w.errors:
        print("ERROR", e, file=sys.stderr)
    v.close()
    napari.Viewer.close_all()
    return 1 if w.errors else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/gui_walk", type=Path)
    ap.add_argument("--only", choices=["all", "smear"], default="all",
                    help="smear: napari's yardsticks, then segment and classify the BCCD field "
                    "and add the same result layers directly with napari (its own cost)")  # fmt: skip
    ap.add_argument("--sample", action="store_true",
                    help="sample the GUI thread's stack: each step names what its longest "
                    "stall ran")  # fmt: skip
    args = ap.parse_args(argv)
    return run(args.out, only=args.only, sample=args.sample)


if __name__ == "__main__":
    sys.exit(main())
