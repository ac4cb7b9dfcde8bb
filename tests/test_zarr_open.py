"""Opening an OME-Zarr pyramid (issue 19): what get_reader and the reader import, and which
chunks they read. Timings are in benchmarks/bench_zarr.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_nucleus_ai.io import ngff


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """A 1100 x 900 grey pyramid (3 levels, 128 x 128 chunks) written by the plugin."""
    img = np.random.default_rng(3).integers(0, 255, (1100, 900), dtype=np.uint8)
    path = tmp_path_factory.mktemp("open") / "grey.zarr"
    ngff.write_ngff(path, img, pixel_size=0.25, unit="um", chunk=128)
    return str(path), img


def test_get_reader_and_reader_import_no_dask_or_pandas(pyramid):
    """npe2's get_reader reads only metadata (json); opening an image needs zarr alone."""
    path, _ = pyramid
    code = f"""
import json, sys
heavy = ("zarr", "dask", "dask.array", "distributed", "pandas", "xarray", "torch", "napari")
loaded = lambda: [m for m in heavy if m in sys.modules]
from napari_nucleus_ai.io.napari_io import get_reader
read = get_reader({path!r})
after_get_reader = loaded()
((data, kwargs, kind),) = read({path!r})
print(json.dumps({{"get_reader": after_get_reader, "reader": loaded(), "kind": kind,
                  "levels": len(data), "type": type(data[0]).__module__}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["kind"] == "image" and res["levels"] == 3
    assert res["get_reader"] == []
    assert res["reader"] == ["zarr"]
    assert res["type"].startswith("zarr")


def test_reader_reads_only_the_chunks_it_needs(pyramid, monkeypatch):
    """Open: the smallest level's chunks (for the contrast limits) and no other; a region:
    the chunks under it; the same region again: none (zarr's chunk cache)."""
    from zarr.storage import LocalStore

    path, img = pyramid
    reads: list[str] = []
    orig = LocalStore.get

    async def counting(self, key, *a, **k):
        if not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json")):
            reads.append(key)
        return await orig(self, key, *a, **k)

    monkeypatch.setattr(LocalStore, "get", counting)
    ((levels, kw, _),) = ngff.read_layers(path)
    assert [v.shape for v in levels] == [(1100, 900), (550, 450), (275, 225)]
    assert kw["multiscale"] and kw["scale"] == (0.25, 0.25)
    assert sorted(reads) == [f"s2/{i}/{j}" for i in range(3) for j in range(2)]  # 275 x 225
    lo, hi = kw["contrast_limits"]
    assert lo >= img.min() and hi <= img.max() and hi > lo
    reads.clear()
    region = np.asarray(levels[0][300:400, 260:380])  # chunk rows 2-3, chunk column 2
    assert np.array_equal(region, img[300:400, 260:380])
    assert sorted(reads) == ["s0/2/2", "s0/3/2"]
    reads.clear()
    np.asarray(levels[0][300:400, 260:380])
    assert reads == []


def test_layers_read_from_a_store_write_back_lazily(pyramid, tmp_path):
    """The npe2 writer takes the zarr levels a store was opened with (no dask given)."""
    path, img = pyramid
    ((levels, kw, kind),) = ngff.read_layers(path)
    lab = np.zeros(img.shape, np.int32)
    lab[100:200, 300:420] = 7
    ngff.write_ngff(tmp_path / "with_labels.zarr", img, {"cells": (lab, None)}, pixel_size=0.25)
    layers = ngff.read_layers(tmp_path / "with_labels.zarr")
    assert type(layers[1][0][0]).__module__.startswith("zarr")  # labels levels: zarr arrays
    (out,) = ngff.write_ngff_layers(str(tmp_path / "again"), [(levels, kw, kind), layers[1]])
    back = ngff.read_ngff(out)
    assert np.array_equal(np.asarray(back["image"]["levels"][0]), img)
    assert back["image"]["scale"].tolist() == [0.25, 0.25]
    (cells,) = back["labels"].values()
    assert np.array_equal(np.asarray(cells["levels"][0]), lab)


def test_a_store_missing_a_level_gets_one_line(pyramid, tmp_path, capsys):
    """A level (or labels group) the metadata lists but the store lacks: one line naming it."""
    import shutil

    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.core.errors import InputError

    path, _ = pyramid
    broken = tmp_path / "broken.zarr"
    shutil.copytree(path, broken)
    shutil.rmtree(broken / "s1")
    with pytest.raises(InputError, match="multiscales level 's1' is missing"):
        ngff.read_layers(broken)
    assert main(["info", str(broken)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0] and "'s1'" in err[0]


@pytest.mark.parametrize("scale", ["x", [1.0, 2.0, 3.0], [None, 1.0]])
def test_bad_transforms_get_one_line(pyramid, tmp_path, scale, capsys):
    """A scale that is not one finite, positive number per axis: one line, not a traceback."""
    import shutil

    from napari_nucleus_ai.cli import main

    path, _ = pyramid
    bad = tmp_path / "bad.zarr"
    shutil.copytree(path, bad)
    attrs = json.loads((bad / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": scale}
    ]
    (bad / ".zattrs").write_text(json.dumps(attrs))
    assert main(["info", str(bad)]) != 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(bad) in line and "coordinateTransformations" in line
