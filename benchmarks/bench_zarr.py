"""OME-Zarr figures on a 40,000 x 40,000 pyramid: open-to-layer time and chunks read.

Usage (each measurement runs in its own process under ``/usr/bin/time -v``)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_zarr.py all   # write if missing, measure
    .venv/bin/python benchmarks/bench_zarr.py write          # only write /tmp/bench-40k.zarr
    .venv/bin/python benchmarks/bench_zarr.py open           # one measurement, in-process
    xvfb-run -a .venv/bin/python benchmarks/bench_zarr.py pan

* ``write``: tiles a 1024 x 1024 synthetic smear (grey, 0.25 um/px) periodically into a
  40,000 x 40,000 uint8 image and writes it with the plugin's writer
  (:func:`napari_nucleus_ai.io.ngff.write_ngff`: NGFF 0.4, 256 x 256 chunks, 2x levels down
  to 256 px). The store goes to ``$BENCH_ZARR`` or ``/tmp/bench-40k.zarr``; never commit it.
* ``open``: ``import napari``, the npe2 reader (``get_reader(path)(path)``), the napari
  ``Image`` layer built from its tuple (open-to-layer), then one 512 x 512 full-resolution
  region; chunk files read from the store are counted at each step.
* ``pan``: a real (offscreen, xvfb) napari viewer opens the store, zooms to 1:1 on level 0,
  pans five times by half a screen, and counts the chunks read each time against the
  chunks the visible area touches.
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
CHUNK = 256
PATH = Path(os.environ.get("BENCH_ZARR", "/tmp/bench-40k.zarr"))


def write(path: Path = PATH) -> None:
    import dask.array as da
    import numpy as np

    from napari_nucleus_ai.io.ngff import write_ngff
    from napari_nucleus_ai.samples.smear import simulate_smear

    rgb = simulate_smear(seed=0, shape=(1024, 1024), pixel_size_um=0.25, n_wbc=6, noise=1.5).image
    base = rgb.mean(axis=-1).astype(np.uint8)
    n = base.shape[0]

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        ys, xs = np.arange(y0, y1) % n, np.arange(x0, x1) % n
        return base[ys][:, xs]

    image = da.map_blocks(
        block, chunks=((CHUNK * 8,) * (SIZE // (CHUNK * 8)) + (SIZE % (CHUNK * 8),),) * 2,
        dtype=np.uint8,
    )  # fmt: skip
    t = time.perf_counter()
    write_ngff(path, image, axes="YX", pixel_size=0.25, unit="um", chunk=CHUNK)
    files = sum(len(f) for _, _, f in os.walk(path))
    print(f"wrote {path} ({files} files) in {time.perf_counter() - t:.0f} s")


def _count_chunk_reads() -> list:
    """Patch zarr's local store so every chunk (not metadata) read is recorded."""
    from zarr.storage import LocalStore

    reads: list = []
    orig = LocalStore.get

    async def counting(self, key, *a, **k):
        if not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json")):
            reads.append(key)
        return await orig(self, key, *a, **k)

    LocalStore.get = counting
    return reads


def open_layer(path: Path = PATH) -> None:
    t0 = time.perf_counter()
    import napari

    t1, c1 = time.perf_counter(), time.process_time()
    reads = _count_chunk_reads()
    from napari_nucleus_ai.io.napari_io import get_reader

    (data, kwargs, kind), *_ = get_reader(str(path))(str(path))
    t2 = time.perf_counter()
    reader_reads = len(reads)
    layer = napari.layers.Image(data, **kwargs)
    t3, c3 = time.perf_counter(), time.process_time()
    layer_reads = len(reads) - reader_reads
    # the same again in this process: the store's own cost, modules already imported
    (d2, k2, _), *_ = get_reader(str(path))(str(path))
    napari.layers.Image(d2, **k2)
    t_again, c_again = time.perf_counter() - t3, time.process_time() - c3
    t3 = time.perf_counter()
    y, x = SIZE // 2 + 1000, SIZE // 3 + 700  # not chunk-aligned: touches 3 x 3 chunks
    before = len(reads)
    region = data[0][y : y + 512, x : x + 512].compute()
    t4 = time.perf_counter()
    assert region.shape == (512, 512)
    print(json.dumps({
        "import_napari_s": round(t1 - t0, 2), "reader_s": round(t2 - t1, 2),
        "layer_s": round(t3 - t2 - t_again, 2), "open_to_layer_s": round(t3 - t1 - t_again, 2),
        "open_to_layer_cpu_s": round(c3 - c1, 2), "reopen_s": round(t_again, 2),
        "reopen_cpu_s": round(c_again, 2),
        "region_s": round(t4 - t3, 3), "chunks_read_by_reader": reader_reads,
        "chunks_read_by_layer": layer_reads, "chunks_read_for_region": len(reads) - before,
        "levels": [list(d.shape) for d in data], "scale": list(kwargs["scale"]),
        "multiscale": layer.multiscale,
    }))  # fmt: skip


def pan(path: Path = PATH) -> None:
    import napari
    import numpy as np

    reads = _count_chunk_reads()
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1200, 900)
    (layer,) = viewer.open(str(path), plugin="napari-nucleus-ai")
    sy, sx = layer.scale
    cam = viewer.camera
    viewer.screenshot(canvas_only=True)
    rows = [{"step": "open (overview)", "level": int(layer.data_level), "chunks_read": len(reads)}]
    cam.zoom = 1.0 / sx  # one screen pixel per level-0 pixel
    cy, cx = SIZE / 2 * sy, SIZE / 2 * sx
    for i in range(6):
        reads.clear()
        cam.center = (cy, cx + i * 300 * sx)
        t = time.perf_counter()
        viewer.screenshot(canvas_only=True)
        dt = time.perf_counter() - t
        (y0, x0), (y1, x1) = np.asarray(layer.corner_pixels)[:, -2:]
        lv = int(layer.data_level)
        touched = (int(y1 // CHUNK) - int(y0 // CHUNK) + 1) * (
            int(x1 // CHUNK) - int(x0 // CHUNK) + 1
        )
        levels = sorted({k.split("/")[0] for k in reads})
        rows.append({"step": "zoom 1:1" if i == 0 else f"pan {i}", "level": lv,
                     "chunks_read": len(reads), "chunks_in_view": touched,
                     "levels_read": levels, "render_s": round(dt, 2)})  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    viewer.close()


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
    return secs, cpu, rss, p.stdout.strip()


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "write":
        write()
    elif what == "open":
        open_layer()
    elif what == "pan":
        pan()
    elif what == "all":
        if not PATH.exists():
            write()
        for _ in range(2):  # second run: warm page cache
            secs, cpu, rss, out = _timed(["open"])
            print(
                f"open: {secs:.2f} s wall, {cpu:.2f} s CPU (process), {rss:.0f} MiB peak RSS  {out}"
            )
        secs, cpu, rss, out = _timed(["pan"], xvfb=True)
        print(f"pan (viewer): {secs:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MiB peak RSS\n{out}")
        print(f"load average: {os.getloadavg()}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
