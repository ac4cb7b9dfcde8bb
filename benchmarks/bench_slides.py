"""Whole-slide figures on a 40,000 x 40,000 JPEG-tiled SVS.

Usage (each measurement runs in its own process under ``/usr/bin/time -v``)::

    nice -n 10 .venv/bin/python benchmarks/bench_slides.py all            # write if missing, then measure
    nice -n 10 .venv/bin/python benchmarks/bench_slides.py write          # only write /tmp/bench-40k.svs
    .venv/bin/python benchmarks/bench_slides.py info|open|pan             # one measurement, in-process
    xvfb-run -a .venv/bin/python benchmarks/bench_slides.py shot docs/images/slide-dock.png

* ``write``: renders a 1024 x 1024 synthetic smear (0.25 um/px) once and tiles it
  periodically into a 40,000 x 40,000 Aperio SVS (256-px JPEG tiles, Q85, 4x levels,
  thumbnail, label, macro) with :func:`napari_nucleus_ai.samples.slide.write_slide`.
  The file (~0.5 GB) goes to ``$BENCH_SLIDE`` or ``/tmp/bench-40k.svs``; never commit it.
* ``info``: ``napari-nucleus-ai info FILE --json`` (the CLI, a fresh process).
* ``open``: ``import napari``, the npe2 reader (``get_reader(path)(path)``), then one
  512 x 512 full-resolution region computed from the layer data -- the issue's figure.
* ``pan``: a real (offscreen, xvfb) napari viewer opens the slide, zooms to 1:1 on level 0,
  pans five times by half a screen, and counts the JPEG tiles read from the file each time
  against the tiles the visible area touches.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SIZE = 40_000
PATH = Path(os.environ.get("BENCH_SLIDE", "/tmp/bench-40k.svs"))
TILE = 256


def write(path: Path = PATH) -> None:
    import numpy as np
    from skimage.transform import resize

    from napari_nucleus_ai.samples.slide import write_slide
    from napari_nucleus_ai.samples.smear import simulate_smear

    base = simulate_smear(seed=0, shape=(1024, 1024), pixel_size_um=0.25, n_wbc=6, noise=1.5).image
    cache: dict[int, np.ndarray] = {1: base}

    def pattern(f: int) -> np.ndarray:
        if f not in cache:
            n = max(4, round(1024 / f))
            cache[f] = (resize(base, (n, n), anti_aliasing=True, preserve_range=True)).astype(
                np.uint8
            )
        return cache[f]

    def tiles(f, y, x, h, w):
        p = pattern(f)
        n = p.shape[0]
        ys, xs = np.arange(y, y + h) % n, np.arange(x, x + w) % n
        return p[ys][:, xs]

    t = time.perf_counter()
    write_slide(
        path,
        shape=(SIZE, SIZE),
        tiles=tiles,
        mpp=0.25,
        magnification=40,
        flavour="svs",
        tile=TILE,
        quality=85,
    )
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s"
    )


def info(path: Path = PATH) -> None:
    from napari_nucleus_ai.cli import main

    main(["info", str(path), "--json"])


def open_region(path: Path = PATH) -> None:
    t0 = time.perf_counter()
    import napari  # noqa: F401 - the figure includes napari's import

    t1 = time.perf_counter()
    from napari_nucleus_ai.io.napari_io import get_reader

    layers = get_reader(str(path))(str(path))
    data, kwargs, _ = layers[0]
    t2 = time.perf_counter()
    y, x = SIZE // 2 + 1000, SIZE // 3 + 700  # not tile-aligned: touches 3 x 3 tiles
    region = data[0][y : y + 512, x : x + 512].compute()
    t3 = time.perf_counter()
    assert region.shape == (512, 512, 3)
    print(json.dumps({
        "import_napari_s": round(t1 - t0, 2), "reader_s": round(t2 - t1, 2), "region_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 2), "levels": [list(d.shape) for d in data], "scale": list(kwargs["scale"]),
    }))  # fmt: skip


def pan(path: Path = PATH) -> None:
    import napari
    import numpy as np
    import tifffile

    reads = []
    orig = tifffile.tifffile.FileCache.read

    def counting(self, *a, **k):
        reads.append(1)
        return orig(self, *a, **k)

    tifffile.tifffile.FileCache.read = counting
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1200, 900)
    (layer,) = viewer.open(str(path), plugin="napari-nucleus-ai")
    sy, sx = layer.scale
    cam = viewer.camera
    viewer.screenshot(canvas_only=True)
    rows = [{"step": "open (overview)", "level": int(layer.data_level), "tiles_read": len(reads)}]
    cam.zoom = 1.0 / sx  # one screen pixel per level-0 pixel
    cy, cx = SIZE / 2 * sy, SIZE / 2 * sx
    for i in range(6):
        reads.clear()
        cam.center = (cy, cx + i * 300 * sx)
        t = time.perf_counter()
        viewer.screenshot(canvas_only=True)
        dt = time.perf_counter() - t
        (y0, x0, *_), (y1, x1, *_) = np.asarray(layer.corner_pixels)
        f = layer.downsample_factors[layer.data_level][0]
        touched = (int(y1 // TILE) - int(y0 // TILE) + 1) * (int(x1 // TILE) - int(x0 // TILE) + 1)
        rows.append({"step": "zoom 1:1" if i == 0 else f"pan {i}", "level": int(layer.data_level),
                     "downsample": float(f), "tiles_read": len(reads), "tiles_in_view": touched, "render_s": round(dt, 2)})  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    viewer.close()


def shot(png: str) -> None:
    """The docs screenshot: the smear-slide sample zoomed to a white cell, with the Slide dock."""
    import napari

    viewer = napari.Viewer(show=True)  # shown (under xvfb) so the canvas size is real
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-nucleus-ai", "smear_slide")
    layer = viewer.layers[0]
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Slide")
    viewer.scale_bar.visible = True
    viewer.camera.zoom = 8
    dock.go_to(0.42, 0.55)
    viewer.screenshot(canvas_only=True)  # a first draw syncs the canvas size the dock reads
    dock.level.setValue(0)
    dock.load(sync=True)  # the visible area, into memory
    viewer.layers[-1].visible = False
    viewer.layers.selection.active = layer
    dock._update_view()
    viewer.screenshot(png, canvas_only=False)
    print(png)


def _timed(args: list[str], xvfb: bool = False) -> tuple[float, float, float, str]:
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, *args]
    if xvfb:
        cmd = ["xvfb-run", "-a", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time .*: ([\d:.]+)", p.stderr).group(1)
    secs = sum(float(v) * 60**i for i, v in enumerate(reversed(wall.split(":"))))
    cpu = sum(
        float(re.search(rf"{k} time \(seconds\): ([\d.]+)", p.stderr).group(1))
        for k in ("User", "System")
    )
    return secs, cpu, rss, p.stdout.strip()  # cpu: less sensitive than wall to a busy machine


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "write":
        write()
    elif what == "info":
        info()
    elif what == "open":
        open_region()
    elif what == "pan":
        pan()
    elif what == "shot":
        shot(sys.argv[2])
    elif what == "all":
        if not PATH.exists():
            write()
        for _ in range(2):  # second run: warm page cache
            secs, cpu, rss, out = _timed(["info"])
            print(f"info: {secs:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MiB peak RSS  {out[:100]}")
        for _ in range(2):
            secs, cpu, rss, out = _timed(["open"])
            print(
                f"open+region: {secs:.2f} s wall, {cpu:.2f} s CPU (process), {rss:.0f} MiB peak RSS  {out}"
            )
        secs, cpu, rss, out = _timed(["pan"], xvfb=True)
        print(f"pan (viewer): {secs:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MiB peak RSS\n{out}")
        print(f"load average: {os.getloadavg()}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
