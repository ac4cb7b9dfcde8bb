"""OME-Zarr (NGFF) stores (Qt-free): an image, its labels and the cell table.

Writing uses ome-zarr-py (:mod:`ome_zarr.writer`, the OME reference implementation that
napari-ome-zarr reads with) and writes **NGFF 0.4** (Zarr v2), the version every current
reader (napari-ome-zarr, Fiji's MoBIE/n5-viewer, QuPath's OME-Zarr extension, vizarr,
ome-zarr-models) opens. The layout::

    x.zarr/                      multiscales (image pyramid s0, s1, ...; axes with units),
                                 omero channel names/colours
    x.zarr/labels/               {"labels": ["cells"]}
    x.zarr/labels/cells/         multiscales (label pyramid, nearest) + "image-label":
                                   colors     [{"label-value": n, "rgba": [r, g, b, 255]}]
                                              (each cell in its class colour)
                                   properties [{"label-value": n, <every cell-table column>}]

The cell table travels as the label group's ``image-label.properties`` -- the place the
NGFF 0.4 specification gives to per-label values, which ome-zarr-py and napari-ome-zarr
read back as layer properties. (The NGFF "tables" proposal, AnnData beside the labels, is
not part of 0.4/0.5 and is not written.) The cell table's unit and the class colours are
also kept under the root attribute ``napari-nucleus-ai``.

A store is built under a hidden name beside its destination and renamed into place when
complete (nothing half-written). :func:`write_cells_zarr` is what ``classify --out x.zarr`` and
``batch --format zarr`` write: the source image read lazily + its labels + the cell table.

Reading needs only zarr (both NGFF 0.4 and 0.5, Zarr v2 and v3): every level is the store's
``zarr.Array``, read chunk by chunk as napari slices it, wrapped in dask only where axes must
move (RGB stored as ``c``, channels split into layers); the physical scale and origin come
from the multiscales' ``coordinateTransformations`` and the units of its ``axes``. Opening an
image needs neither dask nor pandas (the cell table of a labels group needs pandas):
``benchmarks/bench_zarr.py`` measures it on a 40,000 x 40,000 pyramid.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER

if TYPE_CHECKING:
    import pandas as pd

NGFF_VERSION = "0.4"
ATTR = "napari-nucleus-ai"
UNIT_NAMES = {"um": "micrometer", "nm": "nanometer", "mm": "millimeter"}
UNIT_SHORT = {v: k for k, v in UNIT_NAMES.items()} | {"micron": "um", "µm": "um"}
#: Pyramid levels are added until the smaller side is at most this.
MIN_LEVEL_SIDE = 256


# ------------------------------------------------------------------ writing
def _levels_for(shape_yx: Sequence[int]) -> tuple[int, ...]:
    """Downsampling factors (2, 4, ...) until the smaller side fits :data:`MIN_LEVEL_SIDE`."""
    n = max(0, math.ceil(math.log2(max(1, min(shape_yx)) / MIN_LEVEL_SIDE)))
    return tuple(2**i for i in range(1, n + 1))


def _axes(kinds: str, unit: str | None) -> list[dict]:
    out = []
    for a in kinds.lower():
        if a == "c":
            out.append({"name": "c", "type": "channel"})
        elif a == "t":
            out.append({"name": "t", "type": "time"})
        else:
            ax = {"name": a, "type": "space"}
            if unit in UNIT_NAMES:
                ax["unit"] = UNIT_NAMES[unit]
            out.append(ax)
    return out


def _fix_transforms(group, dims: str, scale: Sequence[float], origin: Sequence[float]) -> None:
    """Exact per-level ``scale`` + ``translation`` (pixel centres of level 0 at ``origin``)."""
    attrs = group.attrs.asdict()
    ms = attrs["multiscales"][0]
    shape0 = group[ms["datasets"][0]["path"]].shape
    spatial = {a: (s, o) for a, s, o in zip("yx", scale, origin, strict=True)}
    if "z" in dims:
        spatial["z"] = (scale[0], origin[0]) if len(scale) == 3 else (1.0, 0.0)
    for ds in ms["datasets"]:
        shape = group[ds["path"]].shape
        sc, tr = [], []
        for i, a in enumerate(dims):
            if a in spatial and a in "yx":
                s0, o = spatial[a]
                f = shape0[i] / shape[i]
                sc.append(float(s0 * f))
                tr.append(float(o + (f - 1) / 2 * s0))
            else:
                sc.append(1.0)
                tr.append(0.0)
        ds["coordinateTransformations"] = [
            {"type": "scale", "scale": sc},
            {"type": "translation", "translation": tr},
        ]
    group.attrs.update({"multiscales": attrs["multiscales"]})


def _jsonable(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


def table_properties(table: pd.DataFrame) -> list[dict]:
    """The cell table as NGFF ``image-label.properties`` (``label-value`` + every column)."""
    from napari_nucleus_ai.cells import validate_cell_table

    table = validate_cell_table(table).drop(columns=["index"], errors="ignore")
    out = []
    for rec in table.to_dict("records"):
        row = {"label-value": int(rec.pop("label"))}
        row.update({str(k): _jsonable(v) for k, v in rec.items()})
        out.append(row)
    return out


def properties_table(properties: Sequence[Mapping]) -> pd.DataFrame:
    """Back from ``image-label.properties`` to a cell table (``label`` first)."""
    import pandas as pd

    from napari_nucleus_ai.cells import validate_cell_table

    rows = [dict(p) for p in properties if isinstance(p, Mapping) and "label-value" in p]
    if not rows:
        from napari_nucleus_ai.cells import empty_table

        return empty_table()
    df = pd.DataFrame.from_records(rows).rename(columns={"label-value": "label"})
    df = df[["label", *[c for c in df.columns if c != "label"]]]
    for c in df.columns:  # null (NaN written as JSON null) back to NaN in numeric columns
        if df[c].dtype == object:
            conv = pd.to_numeric(df[c], errors="coerce")
            if conv.notna().sum() == df[c].notna().sum() and df[c].notna().any():
                df[c] = conv
    return validate_cell_table(df)


def _table_meta(meta: dict, table: pd.DataFrame, colours: Mapping[str, str]) -> dict:
    """Put ``table`` into an ``image-label`` dict: ``properties``, and ``colors`` from its
    ``class`` (``colours``, else the palette); returns the class colours used."""
    meta["properties"] = table_properties(table)
    colours = dict(colours or {})
    if "class" in table.columns:
        if not colours:
            from napari_nucleus_ai.io.geojson import layer_class_colours

            colours = layer_class_colours({}, table)
        meta["colors"] = [
            {"label-value": int(r["label"]), "rgba": _rgba(colours[r["class"]])}
            for _, r in table.iterrows()
            if isinstance(r["class"], str) and r["class"] in colours
        ]
    return colours


def replace_label_table(path: str | os.PathLike, name: str, table: pd.DataFrame) -> None:
    """Replace the cell table (and its class colours) of labels ``name`` in an OME-Zarr store
    written by :func:`write_ngff`, leaving the pixels alone (a batch run's adapted classes).

    Parameters
    ----------
    path : path-like
        The ``.zarr`` store.
    name : str
        The labels group (``labels/<name>``).
    table : DataFrame
        Its new cell table.
    """
    import zarr

    try:
        root = zarr.open_group(os.fspath(path), mode="r+")
        group = root[f"labels/{name}"]
    except Exception as e:  # noqa: BLE001 - any zarr failure is a one-line problem
        raise InputError(path, f"no labels {name!r} to update ({type(e).__name__})") from None
    attrs = group.attrs.asdict()
    nested = "ome" in attrs  # NGFF 0.5 keeps everything under "ome"
    outer = dict(attrs["ome"]) if nested else attrs
    meta = dict(outer.get("image-label") or {"version": NGFF_VERSION})
    meta.pop("colors", None)
    ours = root.attrs.asdict().get(ATTR) or {}
    _table_meta(meta, table, ours.get("class_colours") or {})
    outer["image-label"] = meta
    group.attrs.update({"ome": outer} if nested else {"image-label": meta})


def _rgba(colour: str) -> list[int]:
    from matplotlib.colors import to_rgba

    return [round(255 * c) for c in to_rgba(colour)]


def write_ngff(
    path: str | os.PathLike,
    image=None,
    labels: Mapping[str, tuple] | None = None,
    *,
    axes: str | None = None,
    pixel_size: Sequence[float] | float | None = None,
    unit: str = "um",
    origin: Sequence[float] | None = None,
    channel_names: Sequence[str] | None = None,
    class_colours: Mapping[str, str] | None = None,
    name: str | None = None,
    chunk: int = 1024,
) -> str:
    """Write an OME-Zarr (NGFF 0.4) store: image pyramid, label pyramids and cell tables.

    Parameters
    ----------
    path : path-like
        The ``.zarr`` folder (replaced when it exists and is an OME-Zarr store).
    image : array-like, optional
        numpy or dask; ``axes`` tells its layout (default ``"YX"``, ``"YXS"`` for RGB(A),
        ``"CYX"`` for a small leading axis, else ``"ZYX"``). RGB is stored as ``c`` with
        channels R, G, B.
    labels : mapping, optional
        ``{name: (label_array, cell_table_or_None)}``; each under ``labels/<name>``.
        Label arrays are ``(Y, X)`` or ``(Z, Y, X)`` on the image's grid.
    pixel_size : float or (y, x) / (z, y, x)
        Physical pixel size in ``unit`` (``"px"``: none).
    origin : (y, x), optional
        Physical position of pixel (0, 0)'s centre (napari's ``translate``).
    channel_names : list of str, optional
    class_colours : mapping, optional
        ``{class: colour}``; cells are coloured by their table's ``class``.

    Returns
    -------
    str
        ``path``. The store is written beside it under a hidden name and renamed into
        place when complete, so a failed write leaves no half store.
    """
    import shutil
    import tempfile

    path = os.fspath(path)
    if image is None and not labels:
        raise InputError(path, "nothing to write: give an image or labels")
    if os.path.exists(path) and (not os.path.isdir(path) or (os.listdir(path) and not sniff(path))):
        raise InputError(path, "exists and is not an OME-Zarr store; not replacing it")
    # nothing half-written: the store is built in a hidden folder beside ``path`` and
    # renamed into place when complete (an old store is removed just before)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path.rstrip(os.sep))}.", dir=parent)
    try:
        _write_store(
            tmp, path, image, labels, axes=axes, pixel_size=pixel_size, unit=unit,
            origin=origin, channel_names=channel_names, class_colours=class_colours,
            name=name, chunk=chunk,
        )  # fmt: skip
        os.chmod(tmp, 0o777 & ~_umask())
        target = path.rstrip(os.sep) or path
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def check_zarr_out(path: str | os.PathLike, option: str = "--out") -> str:
    """``path`` if an OME-Zarr store can be written there, else :class:`UsageError` (before work).

    The name must end in ``.zarr``; an existing folder must be an OME-Zarr store (it is
    replaced) or empty; the parent folder must exist and be writable.
    """
    from napari_nucleus_ai.core.errors import UsageError

    p = os.fspath(path).rstrip("/")
    if not p.lower().endswith(".zarr"):
        raise UsageError(f"{option} {p}: writes an OME-Zarr store; use a name ending in .zarr")
    if os.path.exists(p) and (not os.path.isdir(p) or (os.listdir(p) and not sniff(p))):
        raise UsageError(f"{option} {p}: exists and is not an OME-Zarr store")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {p}: folder {parent} is not writable")
    return p


def write_cells_zarr(
    path: str | os.PathLike,
    source: str | os.PathLike | None,
    labels,
    table: pd.DataFrame | None,
    *,
    scale=None,
    unit: str = "um",
    origin=None,
    class_colours: Mapping[str, str] | None = None,
    name: str = "cells",
) -> str:
    """One result as an OME-Zarr store: the source image, its labels and their cell table.

    What ``classify --out x.zarr`` and ``batch --format zarr`` write (``export-zarr`` writes
    the same layout from files). The image is read lazily from ``source`` with its axes
    and channel names; a source that is not an image (a localization table) gives a
    labels-only store.

    Parameters
    ----------
    path : path-like
        The ``.zarr`` folder (an existing OME-Zarr store there is replaced).
    source : path-like or None
        The image the labels were made from.
    labels : array-like
        ``(Y, X)`` label image on the source's grid.
    table : DataFrame or None
        The cell table of ``labels`` (with ``class`` when classified).
    scale, unit, origin
        Pixel size ``(y, x)`` or a float, its unit (``"um"``, ``"nm"``, ``"px"``) and the
        position of pixel (0, 0)'s centre, as napari's ``scale``/``translate``.
    class_colours : mapping, optional
        ``{class: colour}``; default: the plugin's palette for the table's classes.
    name : str
        The labels group (``labels/<name>``).
    """
    from napari_nucleus_ai import images

    image = axes = channels = None
    if source is not None and images.sniff(source):
        img = images.read_image(source)
        image, axes, channels = img.levels[0], img.axes.replace("I", "Z"), img.channels or None
        if scale is None and img.pixel_size_um:
            scale, unit = img.pixel_size_um, "um"
        if "Z" in axes and scale is not None:  # the image's z step, in ``unit``
            yx = np.broadcast_to(np.asarray(scale, float), (2,)).tolist()
            z_um = img.metadata.get("z_step_um")
            z = z_um * 1000.0 / NM_PER.get(unit, 1000.0) if z_um and unit in UNIT_NAMES else 1.0
            scale = (z, *yx)
    return write_ngff(
        path, image, {name: (labels, table)}, axes=axes, pixel_size=scale,
        unit=unit if unit in UNIT_NAMES else "px", origin=origin, channel_names=channels,
        class_colours=class_colours,
    )  # fmt: skip


def _spatial(values, default: float, n: int) -> np.ndarray:
    """``values`` (a float, or the last spatial axes: (y, x) for a z stack) as ``n`` numbers."""
    v = np.atleast_1d(np.asarray(values if values is not None else default, float))
    if 1 < v.size < n:  # (y, x) given for a (z, y, x) image: z unknown
        v = np.concatenate([np.full(n - v.size, default), v])
    return np.broadcast_to(v[-n:] if v.size > n else v, (n,))


def _array(x):
    """``x`` as dask (kept lazy: dask or zarr arrays, e.g. layers read from a store) or numpy."""
    if hasattr(x, "dask"):
        return x
    if type(x).__module__.split(".")[0] == "zarr":
        import dask.array as da

        return da.from_zarr(x, chunks=x.chunks)
    return np.asarray(x)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_store(
    store, path, image, labels, *, axes, pixel_size, unit, origin, channel_names,
    class_colours, name, chunk,
) -> None:  # fmt: skip
    """:func:`write_ngff` into the folder ``store`` (errors name ``path``)."""
    import dask.array as da
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image, write_labels

    fmt = FormatV04()
    unit = unit if unit in UNIT_NAMES else None
    root = zarr.open_group(store, mode="w", zarr_format=2)
    ref_shape = None
    first_labels = next(iter(labels.values()))[0] if labels else None
    if image is not None:
        arr = _array(image)
        if axes is None:
            if arr.ndim == 2:
                axes = "YX"
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
                axes = "YXS"
            elif arr.ndim == 3:
                axes = "CYX" if arr.shape[0] <= 8 else "ZYX"
            else:
                raise InputError(path, f"give the axes of a {arr.ndim}D image (e.g. CZYX)")
        axes = axes.upper()
        if len(axes) != arr.ndim:
            raise InputError(path, f"axes {axes} do not fit an image of shape {arr.shape}")
        if "S" in axes:  # colour samples -> channels
            arr = (
                da.moveaxis(da.asarray(arr), axes.index("S"), 0)
                if hasattr(arr, "dask")
                else np.moveaxis(arr, axes.index("S"), 0)
            )
            axes = "C" + axes.replace("S", "")
            channel_names = channel_names or ["R", "G", "B", "A"][: arr.shape[0]]
        order = [axes.index(a) for a in "TCZYX" if a in axes]
        axes = "".join(axes[i] for i in order)
        arr = arr.transpose(order)
        dims = axes.lower()
        ref_shape = arr.shape[-2:]
    else:
        first_labels = _array(first_labels)
        ref_shape = np.shape(first_labels)[-2:]
        dims = "zyx" if np.ndim(first_labels) == 3 else "yx"
    nspatial = sum(a in "zyx" for a in dims)
    ps = _spatial(pixel_size, 1.0, nspatial)
    org = _spatial(origin, 0.0, nspatial)
    factors = _levels_for(ref_shape)
    spatial_scale = dict(zip([a for a in dims if a in "zyx"], ps.tolist(), strict=True))
    units = {a: UNIT_NAMES[unit] for a in spatial_scale} if unit else None
    opts = {
        "chunks": tuple(
            min(chunk, n) if d in "yx" else 1
            for d, n in zip(
                dims, (arr.shape if image is not None else np.shape(first_labels)), strict=True
            )
        )
    }
    if image is not None:
        omero = None
        if "c" in dims:
            nc = arr.shape[dims.index("c")]
            names = list(channel_names or [f"channel {i}" for i in range(nc)])
            rgb = {"R": "FF0000", "G": "00FF00", "B": "0000FF"}
            hi = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
            omero = {
                "channels": [
                    {
                        "label": str(n),
                        "color": rgb.get(str(n), "FFFFFF"),
                        "active": True,
                        "window": {"start": 0.0, "end": hi, "min": 0.0, "max": hi},
                    }
                    for n in names
                ],
                "rdefs": {"model": "color"},
            }
        kw = {"omero": omero} if omero else {}
        write_image(
            arr, root, scale_factors=factors, fmt=fmt, axes=_axes(dims, unit),
            scale={a: spatial_scale.get(a, 1.0) for a in dims}, axes_units=units,
            storage_options=opts,
            name=name or "image", **kw,
        )  # fmt: skip
        _fix_transforms(root, dims, ps[-2:], org[-2:])
    colours = dict(class_colours or {})
    extra: dict = {"unit": unit or "px", "labels": {}}
    for lname, (lab, table) in (labels or {}).items():
        lab = _array(lab)
        if not np.issubdtype(lab.dtype, np.integer):
            raise InputError(path, f"labels {lname!r} are not integers ({lab.dtype})")
        if tuple(lab.shape[-2:]) != tuple(ref_shape):
            raise InputError(
                path, f"labels {lname!r} {lab.shape} are not on the image grid {ref_shape}"
            )
        ldims = "zyx" if lab.ndim == 3 else "yx"
        meta: dict = {"version": NGFF_VERSION}
        if table is not None and len(table):
            colours = _table_meta(meta, table, colours)
        lopts = {"chunks": tuple(min(chunk, n) for n in lab.shape)}
        write_labels(
            lab, root, name=lname, scaler=None, scale_factors=factors, fmt=fmt,
            axes=_axes(ldims, unit), scale=dict(zip(ldims, ps[-lab.ndim:].tolist(), strict=True)),
            axes_units={a: UNIT_NAMES[unit] for a in ldims} if unit else None,
            storage_options=lopts, **{"image-label": meta},
        )  # fmt: skip
        _fix_transforms(root[f"labels/{lname}"], ldims, ps[-2:], org[-2:])
        extra["labels"][lname] = {"table": "image-label.properties"}
    if colours:
        extra["class_colours"] = colours
    root.attrs[ATTR] = extra


# ------------------------------------------------------------------ reading
def _attrs(group) -> dict:
    a = group.attrs.asdict()
    return a.get("ome", a)  # NGFF 0.5 nests everything under "ome"


#: Compressed chunks kept in memory per opened store (zarr's CacheStore), so panning back
#: over a region napari showed before does not read its chunks again.
CHUNK_CACHE_BYTES = 64 * 2**20


def _store(path):
    """The read-only local store of ``path`` behind zarr's LRU chunk cache (when available)."""
    from zarr.storage import LocalStore, MemoryStore

    store = LocalStore(os.fspath(path), read_only=True)
    try:
        from zarr.experimental.cache_store import CacheStore
    except ImportError:  # zarr without the (experimental) cache: every read goes to disk
        return store
    return CacheStore(store, cache_store=MemoryStore(), max_size=CHUNK_CACHE_BYTES)


def _open(path):
    import zarr

    try:
        return zarr.open_group(_store(path), mode="r")
    except Exception as e:  # noqa: BLE001 - any zarr failure is a one-line problem
        raise InputError(path, f"not a readable Zarr store ({type(e).__name__}: {e})") from None


def _node(group, key, path, what: str):
    """``group[key]``, or :class:`InputError` naming the store and what is missing."""
    try:
        return group[str(key)]
    except Exception as e:  # noqa: BLE001 - a missing or broken node is a one-line problem
        raise InputError(
            path, f"{what} {key!r} is missing or unreadable ({type(e).__name__})"
        ) from None


def _multiscale(group, path) -> dict:
    """Levels (``zarr.Array``), axes, per-level-0 scale, translation and units of one group."""
    ms = (_attrs(group).get("multiscales") or [None])[0]
    if not isinstance(ms, dict) or not ms.get("datasets"):
        raise InputError(path, "Zarr group has no NGFF multiscales")
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
    names = "".join(str(a.get("name", "?"))[0] for a in axes) or "yx"[-len(axes) :]
    levels = []
    for ds in ms["datasets"]:
        key = ds.get("path") if isinstance(ds, dict) else ds
        levels.append(_node(group, key, path, "multiscales level"))
    ndim = levels[0].ndim
    scale, translate = np.ones(ndim), np.zeros(ndim)
    transforms = list(ms.get("coordinateTransformations") or [])
    try:
        first = ms["datasets"][0] if isinstance(ms["datasets"][0], dict) else {}
        for t in list(first.get("coordinateTransformations") or []) + transforms:
            if t.get("type") == "scale" and "scale" in t:
                scale = scale * np.broadcast_to(np.asarray(t["scale"], float), (ndim,))
            elif t.get("type") == "translation" and "translation" in t:
                translate = translate + np.broadcast_to(
                    np.asarray(t["translation"], float), (ndim,)
                )
        if not (np.isfinite(scale).all() and (scale > 0).all() and np.isfinite(translate).all()):
            raise ValueError("not finite")
    except (AttributeError, TypeError, ValueError):
        raise InputError(
            path,
            f"multiscales coordinateTransformations: not one finite number per axis ({ndim} axes)",
        ) from None
    units = [UNIT_SHORT.get(str(a.get("unit")), a.get("unit")) for a in axes]
    return {
        "levels": levels,
        "axes": names.lower(),
        "scale": scale,
        "translate": translate,
        "units": units,
        "name": ms.get("name"),
        "version": ms.get("version") or _attrs(group).get("version"),
    }


def read_ngff(path: str | os.PathLike) -> dict:
    """Open an OME-Zarr store lazily.

    Returns
    -------
    dict
        ``image`` (see :func:`_multiscale`: ``levels``, ``axes``, ``scale``, ``translate``,
        ``units``; ``None`` for a labels-only group), ``channels`` (omero labels),
        ``labels`` ``{name: {**multiscale, "table": DataFrame, "colours": {label: rgba}}}``,
        ``class_colours`` and ``unit``.
    """
    root = _open(path)
    attrs = _attrs(root)
    ours = root.attrs.asdict().get(ATTR) or {}
    image = _multiscale(root, path) if attrs.get("multiscales") else None
    channels = [str(c.get("label", "")) for c in (attrs.get("omero") or {}).get("channels", [])]
    labels = {}
    names = []
    if "labels" in root:
        names = list(_attrs(root["labels"]).get("labels") or [])
    for n in names:
        g = _node(root, f"labels/{n}", path, "labels group")
        ms = _multiscale(g, path)
        il = _attrs(g).get("image-label") or {}
        ms["table"] = properties_table(il.get("properties") or [])
        ms["colours"] = {
            int(c["label-value"]): c.get("rgba") for c in il.get("colors") or [] if "rgba" in c
        }
        labels[n] = ms
    if image is None and not labels:
        raise InputError(path, "Zarr store has no NGFF image or labels")
    unit = ours.get("unit")
    if unit is None:
        src = image or next(iter(labels.values()))
        spatial = [u for a, u in zip(src["axes"], src["units"], strict=True) if a in "zyx"]
        unit = spatial[-1] if spatial and spatial[-1] in ("um", "nm") else "px"
    return {
        "image": image,
        "channels": channels,
        "labels": labels,
        "class_colours": ours.get("class_colours") or {},
        "unit": unit,
    }


# ------------------------------------------------------------------ family protocol (io)
def sniff(path: str | os.PathLike) -> bool:
    """A folder holding Zarr group metadata with NGFF ``multiscales`` (or ``labels``)."""
    p = os.fspath(path)
    if not os.path.isdir(p):
        return False
    for meta in (".zattrs", "zarr.json"):
        f = os.path.join(p, meta)
        if os.path.isfile(f):
            try:
                with open(f, encoding="utf-8") as fh:
                    a = json.load(fh)
            except (OSError, ValueError):
                return False
            a = a.get("attributes", a) if meta == "zarr.json" else a
            a = a.get("ome", a)
            return bool(a.get("multiscales") or a.get("labels"))
    return False


def describe(path: str | os.PathLike) -> dict:
    """``info --json``: the image's shape, axes, levels and scale; each labels group's cells."""
    s = read_ngff(path)
    img = s["image"]
    out: dict = {
        "kind": "image" if img else "labels",
        "format": f"ome-zarr {(img or next(iter(s['labels'].values())))['version']}",
        "reader": "napari_nucleus_ai.io.ngff",
        "path": os.fspath(path),
        "unit": s["unit"],
    }
    if img:
        out.update(
            shape=list(img["levels"][0].shape),
            dtype=str(img["levels"][0].dtype),
            axes=img["axes"].upper(),
            levels=[list(v.shape) for v in img["levels"]],
            scale=img["scale"].tolist(),
            translate=img["translate"].tolist(),
            channels=s["channels"],
        )
    out["labels"] = {
        n: {"shape": list(v["levels"][0].shape), "cells": len(v["table"])}
        for n, v in s["labels"].items()
    }
    return out


@functools.cache
def _napari_takes_units() -> bool:
    """Whether the installed napari (>= 0.6) takes a layer's ``units``."""
    try:
        from importlib.metadata import version

        return tuple(int(v) for v in version("napari").split(".")[:2]) >= (0, 6)
    except Exception:  # noqa: BLE001 - napari absent or odd version string
        return False


def _napari_units(axes: str, units: list) -> dict:
    if not _napari_takes_units():
        return {}
    us = [u if u in ("um", "nm", "mm") else "pixel" for u in units]
    return {"units": tuple(us)} if any(u != "pixel" for u in us) else {}


def read_layers(path: str | os.PathLike, **options) -> list:
    """Layer data tuples: the image (multiscale, lazy; one layer per channel, RGB as RGB)
    and one Labels layer per labels group (cell table in ``features``)."""
    s = read_ngff(path)
    base = options.get("name") or os.path.splitext(os.path.basename(os.fspath(path).rstrip("/")))[0]
    layers = []
    img = s["image"]
    if img:
        levels, axes = img["levels"], img["axes"]
        scale, translate, units = img["scale"], img["translate"], list(img["units"])
        kwargs: dict = {"name": base, "metadata": {"path": os.fspath(path), "format": "ome-zarr"}}
        chans = s["channels"]
        if "c" in axes:  # axes move: lazy dask views of the zarr levels
            import dask.array as da

            levels = [da.from_zarr(v, chunks=v.chunks) for v in levels]
        if "c" in axes and chans[:3] == ["R", "G", "B"] and levels[0].dtype == np.uint8:
            c = axes.index("c")
            levels = [da.moveaxis(v, c, -1) for v in levels]
            keep = [i for i, a in enumerate(axes) if a != "c"]
            kwargs.update(rgb=True)
            scale, translate = scale[keep], translate[keep]
            units = [units[i] for i in keep]
            axes = axes.replace("c", "")
        elif "c" in axes:
            c = axes.index("c")
            keep = [i for i, a in enumerate(axes) if a != "c"]
            n = levels[0].shape[c]
            kwargs.update(
                channel_axis=c,
                name=[chans[i] if i < len(chans) else f"{base} channel {i}" for i in range(n)],
                blending="additive",
            )
            scale, translate = scale[keep], translate[keep]
            units = [units[i] for i in keep]
            axes = axes.replace("c", "")
        kwargs.update(
            scale=tuple(scale.tolist()),
            translate=tuple(translate.tolist()),
            axis_labels=tuple(axes),
            **_napari_units(axes, units),
        )
        if len(levels) > 1:
            kwargs["multiscale"] = True
        if not kwargs.get("rgb") and kwargs.get("channel_axis") is None:
            small = np.asarray(levels[-1][...])  # the smallest level only (zarr: no dask)
            if small.size:
                lo, hi = (float(v) for v in np.percentile(small, (0.05, 99.95)))
                kwargs["contrast_limits"] = [lo, hi if hi > lo else lo + 1]
        layers.append((levels if len(levels) > 1 else levels[0], kwargs, "image"))
    for n, lab in s["labels"].items():
        meta = {"path": os.fspath(path), "format": "ome-zarr", "unit": s["unit"], "labels": n}
        if s["class_colours"]:
            meta["class_colors"] = dict(s["class_colours"])
        kw = {
            "name": f"{base} {n}",
            "scale": tuple(lab["scale"].tolist()),
            "translate": tuple(lab["translate"].tolist()),
            "metadata": meta,
            **_napari_units(lab["axes"], list(lab["units"])),
        }
        if len(lab["table"]):
            from napari_nucleus_ai.cells import to_features

            kw["features"] = to_features(lab["table"])
        data = lab["levels"] if len(lab["levels"]) > 1 else lab["levels"][0]
        if len(lab["levels"]) > 1:
            kw["multiscale"] = True
        layers.append((data, kw, "labels"))
    return layers


# ------------------------------------------------------------------ npe2 writer
def _unit_of(meta: dict) -> str:
    units = meta.get("units")
    md = meta.get("metadata") or {}
    if md.get("unit") in ("um", "nm", "px"):
        return md["unit"]
    if units:
        u = str(units[-1])
        for short, names in (
            ("um", ("um", "micrometer", "µm", "micron")),
            ("nm", ("nm", "nanometer")),
        ):
            if u in names:
                return short
    return (
        "um"
        if meta.get("scale") is not None and any(float(s) != 1.0 for s in meta["scale"])
        else "px"
    )


def write_ngff_layers(path: str, layer_data: list) -> list[str]:
    """npe2 writer: an image layer (optional) and Labels layers -> one OME-Zarr store.

    The image's ``scale``/``translate`` give the pixel size and origin (micrometres unless
    the layer says otherwise); each Labels layer is written under ``labels/<name>`` with
    its ``features`` (the cell table) as ``image-label.properties``.
    """
    import pandas as pd

    from napari_nucleus_ai.cells import from_features
    from napari_nucleus_ai.core.files import slug

    path = os.fspath(path)
    if not path.lower().rstrip("/").endswith(".zarr"):
        path += ".zarr"
    image = img_meta = None
    labels: dict = {}
    colours: dict = {}
    ref = None
    for data, meta, kind in layer_data:
        data = data[0] if isinstance(data, list) else data
        if kind == "image" and image is None:
            image, img_meta = data, meta
        elif kind == "labels":
            feats = meta.get("features")
            table = None
            if feats is not None and len(pd.DataFrame(feats)):
                df = pd.DataFrame(feats)
                table = from_features(df) if "label" in df.columns else None
            name = slug(meta.get("name") or "labels").rsplit("-", 1)[0] or "labels"
            labels[name if name not in labels else f"{name}_{len(labels)}"] = (data, table)
            md = meta.get("metadata") or {}
            if table is not None and "class" in table.columns and not colours:
                from napari_nucleus_ai.io.geojson import layer_class_colours

                colours = layer_class_colours(md, table)
            ref = ref or meta
    meta = img_meta or ref or {}
    scale = meta.get("scale")
    ndim_sp = 2
    axes = None
    if image is not None:
        rgb = bool(img_meta.get("rgb"))
        nd = np.ndim(image)
        axes = "YXS" if rgb else {2: "YX", 3: "ZYX", 4: "CZYX"}.get(nd)
        ndim_sp = 2 if rgb or nd == 2 else 3
    sc = list(scale)[-ndim_sp:] if scale is not None else None
    tr = meta.get("translate")
    tr = list(tr)[-2:] if tr is not None else None
    write_ngff(
        path, image, labels, axes=axes, pixel_size=sc, unit=_unit_of(meta), origin=tr,
        class_colours=colours or None,
    )  # fmt: skip
    return [path]
