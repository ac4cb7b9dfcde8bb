"""OME-Zarr figures on a 40,000 x 40,000 pyramid: time to open and chunks read.

Usage (each measurement runs in its own process under ``/usr/bin/time -v``)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_zarr.py all   # ~2 min on a store
    .venv/bin/python benchmarks/bench_zarr.py write          # only write /tmp/bench-40k.zarr
    .venv/bin/python benchmarks/bench_zarr.py reader         # one measurement, in-process
    xvfb-run -a .venv/bin/python benchmarks/bench_zarr.py viewer [--fresh]
    xvfb-run -a .venv/bin/python benchmarks/bench_zarr.py pan

* ``write``: a 1024 x 1024 synthetic smear (grey, 0.25 um/px) repeated into a 40,000 x 40,000
  uint8 image, NGFF 0.4 (Zarr v2, zstd, 256 x 256 chunks, 2x levels down to 156 px, the
  plugin's transforms): each level is generated directly (the tile block-averaged, repeated)
  and written by ome-zarr-py's ``write_multiscale``, then validated with ome-zarr-models.
  ``write-slow`` writes the same image through the plugin's ``write_ngff`` (ome-zarr-py
  builds the pyramid from level 0). Both spend most of their time encoding and writing the
  33,049 chunk files (``write``: 230 s wall, 99 s CPU at load 11). The store goes to
  ``$BENCH_ZARR`` or
  ``/tmp/bench-40k.zarr``; never commit it.
* ``reader``: after ``import napari``: npe2's ``get_reader(path)`` (the metadata sniff), then
  the reader function (imports of the plugin and zarr included), napari's ``Image`` layer
  from its tuple, the reader again, one 512 x 512 level-0 region; chunk files opened are
  counted at each step (an audit hook on ``open``: nothing is imported to count).
* ``viewer``: what a user sees with napari already running: an offscreen (xvfb) viewer that
  has shown a small numpy image before (napari's once-per-session costs of a first Image
  layer paid and timed), then ``viewer.open(path, plugin="napari-nucleus-ai")`` until the
  layer is in the viewer, the first frame, and a second open. ``--fresh``: the store is the
  session's first layer (napari's first-layer costs inside the figure).
* ``pan``: a viewer opens the store, zooms to 1:1 on level 0, pans five times by 300 px,
  and counts the chunks read each time against the chunks the visible area touches.
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


def _smear_tile(n: int = 1024):
    """A ``n x n`` grey synthetic smear (0.25 um/px) that tiles periodically."""
    import numpy as np

    from napari_nucleus_ai.samples.smear import simulate_smear

    rgb = simulate_smear(seed=0, shape=(n, n), pixel_size_um=0.25, n_wbc=6, noise=1.5).image
    return rgb.mean(axis=-1).astype(np.uint8)


def write_slow(path: Path = PATH) -> None:
    """The store through the plugin's own writer (ome-zarr-py builds the pyramid; ~400 s)."""
    import dask.array as da
    import numpy as np

    from napari_nucleus_ai.io.ngff import write_ngff

    base = _smear_tile()
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


def write(path: Path = PATH) -> None:
    """The same store as :func:`write_slow`, each level generated directly.

    The image is the 1024 x 1024 smear tile repeated; level ``k`` of that periodic image is
    the tile block-averaged by ``2**k`` and repeated, so no level is computed from the one
    above. ome-zarr-py's :func:`~ome_zarr.writer.write_multiscale` writes the levels (NGFF
    0.4, Zarr v2, zstd, 256 x 256 chunks, level shapes ``s // 2**k`` as its pyramid builder
    gives), the plugin's transforms and root attributes are added as ``write_ngff`` adds
    them, and the store is validated with ome-zarr-models when it is installed.
    """
    import shutil

    import dask.array as da
    import numpy as np
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    from napari_nucleus_ai.io import ngff

    t = time.perf_counter()
    base = _smear_tile()
    n = base.shape[0]
    factors = (1, *ngff._levels_for((SIZE, SIZE)))
    pyramid = []
    for f in factors:
        p = n // f
        tile = base.reshape(p, f, p, f).mean(axis=(1, 3)).round().astype(np.uint8)
        side = SIZE // f

        def block(block_info=None, tile=tile, p=p):
            (y0, y1), (x0, x1) = block_info[None]["array-location"]
            return tile[np.ix_(np.arange(y0, y1) % p, np.arange(x0, x1) % p)]

        chunks = da.core.normalize_chunks((CHUNK, CHUNK), shape=(side, side))
        pyramid.append(da.map_blocks(block, chunks=chunks, dtype=np.uint8))
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(tmp, mode="w", zarr_format=2)
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"]
    write_multiscale(
        pyramid, root, fmt=FormatV04(), axes=axes, name="image",
        coordinate_transformations=[[{"type": "scale", "scale": [0.25 * f] * 2}] for f in factors],
        storage_options={"chunks": (CHUNK, CHUNK)},
    )  # fmt: skip
    ngff._fix_transforms(root, "yx", (0.25, 0.25), (0.0, 0.0))
    root.attrs[ngff.ATTR] = {"unit": "um", "labels": {}}
    try:
        from ome_zarr_models.v04 import Image

        Image.from_zarr(zarr.open_group(tmp, mode="r"))  # raises on an NGFF 0.4 violation
        checked = "validated with ome-zarr-models"
    except ImportError:
        checked = "not validated (ome-zarr-models absent)"
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    files = sum(len(f) for _, _, f in os.walk(path))
    print(f"wrote {path} ({files} files, {checked}) in {time.perf_counter() - t:.0f} s")


def _count_chunk_reads(path: Path = PATH) -> list:
    """Record every chunk file (not metadata) of the store that is opened, from now on.

    An audit hook on ``open`` (Python's own file-open event, which zarr's local store goes
    through), so nothing (zarr included) is imported to count.
    """
    root = os.fspath(path)
    reads: list = []

    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(root):
            name = args[0].rsplit("/", 1)[-1]
            if not name.startswith((".z", "zarr.json")) and os.path.isfile(args[0]):
                reads.append(os.path.relpath(args[0], root))

    sys.addaudithook(hook)
    return reads


def _kind(array) -> str:
    """``zarr.Array`` / ``dask.Array`` / ``numpy.ndarray``: what a layer level is."""
    return f"{type(array).__module__.split('.')[0]}.{type(array).__name__}"


def _heavy_imported() -> list[str]:
    """Which of the libraries the open could pull in are imported now."""
    names = ("zarr", "dask.array", "distributed", "pandas", "xarray", "pint", "ome_zarr")
    return [m for m in names if m in sys.modules]


def reader(path: Path = PATH) -> None:
    """The npe2 reader alone in a process that imported napari (no viewer)."""
    import napari
    import numpy as np

    p = str(path)
    reads = _count_chunk_reads(path)
    t0, c0 = time.perf_counter(), time.process_time()
    from napari_nucleus_ai.io.napari_io import get_reader

    read = get_reader(p)
    t1 = time.perf_counter()
    after_get_reader = _heavy_imported()
    (data, kwargs, kind), *_ = read(p)
    t2, c2 = time.perf_counter(), time.process_time()
    reader_reads = len(reads)
    after_reader = _heavy_imported()
    layer = napari.layers.Image(data, **kwargs)
    t3 = time.perf_counter()
    layer_reads = len(reads) - reader_reads
    t4 = time.perf_counter()
    (d2, k2, _), *_ = get_reader(p)(p)  # again: modules imported, the store's own cost
    t5 = time.perf_counter()
    y, x = SIZE // 2 + 1000, SIZE // 3 + 700  # not chunk-aligned: touches 3 x 3 chunks
    before = len(reads)
    region = np.asarray(data[0][y : y + 512, x : x + 512])
    t6 = time.perf_counter()
    assert region.shape == (512, 512)
    print(json.dumps({
        "get_reader_s": round(t1 - t0, 3), "reader_s": round(t2 - t0, 2),
        "reader_cpu_s": round(c2 - c0, 2), "napari_layer_s": round(t3 - t2, 2),
        "second_reader_s": round(t5 - t4, 3), "region_512_s": round(t6 - t5, 3),
        "imported_by_get_reader": after_get_reader, "imported_by_reader": after_reader,
        "chunks_read_by_reader": reader_reads, "chunks_read_by_layer": layer_reads,
        "chunks_read_for_region": len(reads) - before, "level_type": _kind(data[0]),
        "levels": len(data), "scale": list(kwargs["scale"]), "multiscale": layer.multiscale,
    }))  # fmt: skip


def viewer_open(path: Path = PATH, fresh: bool = False) -> None:
    """``viewer.open(path, plugin="napari-nucleus-ai")`` in a running (offscreen) napari.

    Unless ``fresh``, the viewer first shows and removes a small numpy image: napari's
    once-per-session costs of a first Image layer (its unit registry; importing xarray, and
    with it pandas, when xarray is installed) are paid, as in a session that opened
    anything before. The plugin, zarr and dask are not imported before the timed open.
    """
    import napari
    import numpy as np

    p = str(path)
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1200, 900)
    napari_first = None
    if not fresh:  # napari's own first Image layer of the session, timed for comparison
        t, c = time.perf_counter(), time.process_time()
        viewer.add_image(np.zeros((64, 64), np.uint8))
        napari_first = (round(time.perf_counter() - t, 2), round(time.process_time() - c, 2))
        viewer.screenshot(canvas_only=True)
        viewer.layers.clear()
    before = _heavy_imported()
    reads = _count_chunk_reads(path)
    t0, c0 = time.perf_counter(), time.process_time()
    (layer,) = viewer.open(p, plugin="napari-nucleus-ai")
    t1, c1 = time.perf_counter(), time.process_time()
    open_reads = len(reads)
    viewer.screenshot(canvas_only=True)
    t2 = time.perf_counter()
    frame_reads = list(reads)
    viewer.layers.clear()
    t3 = time.perf_counter()
    viewer.open(p, plugin="napari-nucleus-ai")
    t4 = time.perf_counter()
    print(json.dumps({
        "session": "fresh viewer" if fresh else "viewer that showed an image before",
        "open_s": round(t1 - t0, 2), "open_cpu_s": round(c1 - c0, 2),
        "napari_first_numpy_layer_s_cpu": napari_first,
        "first_frame_s": round(t2 - t1, 2), "second_open_s": round(t4 - t3, 2),
        "chunks_read_by_open": open_reads, "chunks_read_to_first_frame": len(frame_reads),
        "levels_read": sorted({k.split("/")[0] for k in frame_reads}),
        "imported_before": before,
        "imported_by_open": sorted(set(_heavy_imported()) - set(before)),
        "multiscale": layer.multiscale, "level_type": _kind(layer.data[0]),
    }))  # fmt: skip
    viewer.close()


def pan(path: Path = PATH) -> None:
    import napari
    import numpy as np

    reads = _count_chunk_reads(path)
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
    elif what == "write-slow":
        write_slow()
    elif what == "reader":
        reader()
    elif what == "viewer":
        viewer_open(fresh="--fresh" in sys.argv[2:])
    elif what == "pan":
        pan()
    elif what == "all":
        if not PATH.exists():
            write()
        print(f"load average before: {os.getloadavg()}")
        for _ in range(2):  # the first run also warms the page cache
            secs, cpu, rss, out = _timed(["reader"])
            print(f"reader (process {secs:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MiB): {out}")
        for args in (["viewer"], ["viewer"], ["viewer", "--fresh"]):
            secs, cpu, rss, out = _timed(args, xvfb=True)
            print(f"{' '.join(args)} (process {secs:.1f} s wall, {cpu:.1f} s CPU, "
                  f"{rss:.0f} MiB): {out}")  # fmt: skip
        secs, cpu, rss, out = _timed(["pan"], xvfb=True)
        print(f"pan (process {secs:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MiB)\n{out}")
        print(f"load average after: {os.getloadavg()}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
