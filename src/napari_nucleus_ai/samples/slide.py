"""A small synthetic whole-slide image, written with tifffile as a real pyramid.

:func:`write_slide` writes Aperio-SVS-like, OME-TIFF (SubIFD) or generic pyramidal TIFF
files with JPEG (or other) tiles, an MPP/magnification/date, and -- for SVS -- the
thumbnail, label and macro pages that are not pyramid levels. It takes either a level-0
array (small slides) or a tile function (huge ones: the 40,000 x 40,000 benchmark), so
tests and benchmarks exercise exactly the files the readers meet in the lab.

:func:`smear_slide_sample` (npe2 sample data) renders a 2048 x 3072 smear at 0.25 um/px
(a 40x scan) with :func:`~napari_nucleus_ai.samples.smear.simulate_smear`, writes it once
into the cache folder and opens it lazily through the plugin's own reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

SLIDE_VERSION = 1  # bump when the sample's content changes (new cache file)
_APERIO = "Aperio Image Library v12.0.15"


def _downsample(img: np.ndarray, f: int) -> np.ndarray:
    from napari_nucleus_ai.images.regions import block_mean

    return block_mean(img, f)


def _tile_iter(source: Callable, f: int, shape, tile: int):
    h, w = shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            th, tw = min(tile, h - y), min(tile, w - x)
            t = np.asarray(source(f, y, x, th, tw), dtype=np.uint8)
            if t.shape[:2] != (tile, tile):
                t = np.pad(t, ((0, tile - th), (0, tile - tw), (0, 0)), mode="edge")
            yield t


def _label_image(text_seed: int) -> np.ndarray:
    """A slide label: white with a fake 1-D barcode (deterministic)."""
    rng = np.random.default_rng(text_seed)
    img = np.full((240, 480, 3), 245, np.uint8)
    bars = rng.integers(0, 2, 90).repeat(4)
    img[30:130, 60 : 60 + bars.size][:, bars.astype(bool)] = 20
    img[160:200, 60:420] = (40, 40, 160)
    return img


def write_slide(
    path: str | os.PathLike,
    level0: np.ndarray | None = None,
    *,
    shape: tuple[int, int] | None = None,
    tiles: Callable | None = None,
    mpp: float = 0.25,
    magnification: float = 40.0,
    flavour: str = "svs",
    tile: int = 256,
    compression: str = "jpeg",
    quality: int = 85,
    factor: int | None = None,
    min_size: int = 256,
    date: str = "01/15/2026",
    associated: bool = True,
) -> Path:
    """Write an RGB whole-slide pyramid with tifffile.

    Parameters
    ----------
    path : path-like
        Output file (written atomically).
    level0 : ndarray (Y, X, 3) uint8, optional
        Full-resolution image; lower levels are block means.
    shape, tiles : optional
        For slides too big for memory: level-0 ``(height, width)`` and a function
        ``tiles(downsample, y, x, h, w) -> (h, w, 3) uint8`` giving that region of the
        slide at ``downsample`` times less resolution.
    mpp : float
        Micrometres per level-0 pixel.
    flavour : {"svs", "ome", "generic"}
        Aperio SVS (ImageDescription metadata, thumbnail/label/macro pages), OME-TIFF with
        SubIFD levels, or a plain TIFF with SubIFD levels and resolution tags.
    factor : int, optional
        Downsampling between levels (default 4 for SVS, 2 otherwise).
    min_size : int
        Stop adding levels below this many pixels on the long side.
    """
    import tifffile

    from napari_nucleus_ai.core.files import atomic_path

    if level0 is not None:
        level0 = np.ascontiguousarray(level0[..., :3], dtype=np.uint8)
        shape = level0.shape[:2]

        cache: dict[int, np.ndarray] = {}

        def tiles_cached(f, y, x, h, w):
            if f not in cache:
                cache[f] = _downsample(level0, f)
            return cache[f][y : y + h, x : x + w]

        source = tiles_cached
    elif shape is not None and tiles is not None:
        source = tiles
    else:
        raise ValueError("give level0, or shape and tiles")
    h, w = int(shape[0]), int(shape[1])
    factor = factor or (4 if flavour == "svs" else 2)
    downs = [1]
    while max(h, w) // (downs[-1] * factor) >= min_size:
        downs.append(downs[-1] * factor)
    shapes = [(-(-h // f), -(-w // f), 3) for f in downs]
    thumb_f = max(1, int(np.ceil(max(h, w) / 768)))
    thumb_shape = (-(-h // thumb_f), -(-w // thumb_f))
    opts = {"tile": (tile, tile), "compression": compression, "photometric": "rgb"}
    if compression in ("jpeg", "jpeg2000", "webp"):
        opts["compressionargs"] = {"level": quality}
    big = h * w * 3 > 2**31
    with (
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=big, ome=(flavour == "ome")) as tw,
    ):
        if flavour == "svs":
            desc = (
                f"{_APERIO}\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q={quality}"
                f"|AppMag = {magnification:g}|MPP = {mpp:.4f}|Date = {date}|Time = 10:30:00"
                f"|ScanScope ID = SYNTH|Filename = synthetic"
            )
            tw.write(
                _tile_iter(source, 1, shapes[0], tile),
                shape=shapes[0],
                dtype="uint8",
                description=desc,
                metadata=None,
                **opts,
            )
            thumb = np.asarray(source(thumb_f, 0, 0, *thumb_shape), np.uint8)
            tw.write(
                thumb,
                description=f"{_APERIO}\n{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - ",
                metadata=None,
                photometric="rgb",
                compression="jpeg",
            )
            for f, s in zip(downs[1:], shapes[1:], strict=True):
                d = f"{_APERIO}\n{w}x{h} [0,0 {w}x{h}] -> {s[1]}x{s[0]} JPEG/RGB Q={quality}"
                tw.write(
                    _tile_iter(source, f, s, tile),
                    shape=s,
                    dtype="uint8",
                    description=d,
                    metadata=None,
                    **opts,
                )
            if associated:
                label = _label_image(h * 7 + w)
                tw.write(
                    label,
                    description=f"{_APERIO}\nlabel {label.shape[1]}x{label.shape[0]}",
                    metadata=None,
                    photometric="rgb",
                    compression="lzw",
                    subfiletype=1,
                )
                macro = _downsample(np.asarray(source(thumb_f, 0, 0, *thumb_shape), np.uint8), 2)
                tw.write(
                    macro,
                    description=f"{_APERIO}\nmacro {macro.shape[1]}x{macro.shape[0]}",
                    metadata=None,
                    photometric="rgb",
                    compression="jpeg",
                    subfiletype=9,
                )
        else:
            res = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
            meta = (
                {
                    "axes": "YXS",
                    "PhysicalSizeX": mpp,
                    "PhysicalSizeY": mpp,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeYUnit": "µm",
                }
                if flavour == "ome"
                else None
            )
            tw.write(
                _tile_iter(source, 1, shapes[0], tile),
                shape=shapes[0],
                dtype="uint8",
                subifds=len(downs) - 1,
                metadata=meta,
                **res,
                **opts,
            )
            for f, s in zip(downs[1:], shapes[1:], strict=True):
                tw.write(
                    _tile_iter(source, f, s, tile),
                    shape=s,
                    dtype="uint8",
                    subfiletype=1,
                    metadata=None,
                    **res,
                    **opts,
                )
    return Path(path)


def cache_dir() -> Path:
    """Where generated sample files live (``NAPARI_NUCLEUS_AI_CACHE_DIR`` overrides it)."""
    from napari_nucleus_ai.core.files import cache_dir as plugin_cache

    return plugin_cache(create=True)


def synthetic_slide_path(seed: int = 0, flavour: str = "svs") -> Path:
    """The sample slide's file, written on first use (about 5-10 s), then reused."""
    ext = {"svs": ".svs", "ome": ".ome.tif", "generic": ".tif"}[flavour]
    path = cache_dir() / f"synthetic-smear-slide-v{SLIDE_VERSION}-seed{seed}{ext}"
    if not path.exists():
        from napari_nucleus_ai.samples.smear import simulate_smear

        sim = simulate_smear(seed=seed, shape=(1536, 2048), pixel_size_um=0.25, n_wbc=24, noise=1.5)
        write_slide(
            path,
            sim.image,
            mpp=0.25,
            magnification=40,
            flavour=flavour,
            factor=2 if flavour != "svs" else 4,
        )
    return path


def smear_slide_sample() -> list:
    """npe2 ``sample_data``: the synthetic smear slide, opened lazily by the plugin's reader."""
    from napari_nucleus_ai.images import read_layers

    layers = read_layers(synthetic_slide_path(0, "svs"), name="smear slide (synthetic)", lazy=True)
    return layers
