"""GeoJSON of cells for QuPath (Qt-free): labels + cell table <-> Features.

One ``Feature`` per cell, as QuPath (>= 0.3) imports and exports them::

    {"type": "Feature", "id": "<uuid>",
     "geometry": {"type": "Polygon", "coordinates": [[[x, y], ...]]},
     "properties": {"objectType": "detection",
                    "name": "cell 7",
                    "classification": {"name": "neutrophil", "color": [31, 119, 180]},
                    "measurements": {"label": 7, "area": 41.5, ...}}}

Coordinates are **image pixels** with ``(0, 0)`` the top-left corner of the top-left pixel
(QuPath's convention; pixel ``(row, col)`` covers ``[col, col+1] x [row, row+1]``), whatever
the layer's physical scale. The outline is the marching-squares contour of the cell's mask
(:func:`skimage.measure.find_contours`, level 0.5) shifted by half a pixel; rings are assembled
into polygons with holes by :mod:`shapely` (even-odd), collinear vertices removed. The reverse
import rasterises each polygon with :func:`skimage.draw.polygon` (pixel centres inside), so a
cell survives the round trip with IoU ~ 1 (thin one-pixel spurs excepted).

``measurements`` are the numeric columns of the cell table; ``classification`` its ``class``
with the model's colour (:func:`napari_nucleus_ai.core.palette.class_colours`). QuPath's older
forms are read too: ``measurements`` as a list of ``{name, value}``, ``colorRGB`` as a packed
int, a bare list of Features, ``MultiPolygon`` geometries and ``objectType: cell`` (the cell
boundary; its ``nucleusGeometry`` is ignored).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_nucleus_ai.core.errors import InputError

if TYPE_CHECKING:  # pandas is imported where a table is built: sniffing a file needs none
    import pandas as pd

OBJECT_TYPES = ("detection", "annotation")
EXTENSIONS = (".geojson",)
#: QuPath names the measurement table's columns; these are not measurements.
_NOT_MEASURED = ("index",)
FOREIGN = "napari_nucleus_ai"
_UUID_NS = uuid.UUID("6f1c1c3e-5a0b-4d7e-9a51-2b7a0c0e9a19")


# ------------------------------------------------------------------ colours
def _rgb(colour) -> list[int]:
    """``[r, g, b]`` (0-255) from ``#rrggbb``, a colour name, an RGB(A) sequence or a packed int."""
    if isinstance(colour, int | np.integer):
        v = int(colour) & 0xFFFFFF
        return [(v >> 16) & 255, (v >> 8) & 255, v & 255]
    if isinstance(colour, str):
        s = colour.strip().lstrip("#")
        if len(s) in (6, 8) and all(c in "0123456789abcdefABCDEF" for c in s):
            return [int(s[i : i + 2], 16) for i in (0, 2, 4)]
        from matplotlib.colors import to_rgb

        return [round(255 * c) for c in to_rgb(colour)]
    vals = [float(c) for c in list(colour)[:3]]
    if max(vals, default=0) <= 1.0:
        vals = [255 * v for v in vals]
    return [int(round(v)) for v in vals]


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb[:3])


def layer_class_colours(metadata: Mapping | None, table: pd.DataFrame) -> dict:
    """``{class: "#rrggbb"}`` for a classified layer: its model's colours, else the palette.

    From ``metadata``: ``class_colors`` (a restored review), else the classifier's
    ``model_card`` (``classes``: ``name``, ``colour``), else ``colours`` (``classes.json``
    of ``napari-nucleus-ai classify``). Classes come from the card, else the table's ``p_*``
    columns (the model's order), else its ``class`` values; the shared palette colours the rest.
    """
    from napari_nucleus_ai.cells import class_columns
    from napari_nucleus_ai.core.palette import class_colours

    meta = dict(metadata or {})
    card = meta.get("model_card") if isinstance(meta.get("model_card"), dict) else {}
    entries = [c for c in card.get("classes", []) if isinstance(c, dict)]
    given = meta.get("class_colors") or meta.get("colours") or {}
    if not given:
        given = {c.get("name"): c.get("colour") for c in entries}
    classes = list(meta.get("classes") or [c.get("name") for c in entries])
    classes += [c[2:] for c in class_columns(table) if c[2:] not in classes]
    if "class" in table.columns:
        classes += sorted(
            {str(c) for c in table["class"].dropna().unique()} - set(map(str, classes))
        )
    return class_colours([str(c) for c in classes], {k: v for k, v in given.items() if v})


# ------------------------------------------------------------------ labels -> GeoJSON
def _cell_geometry(mask: np.ndarray, y0: int, x0: int):
    """The shapely (Multi)Polygon of one cell's boolean ``mask`` whose top-left pixel is (y0, x0)."""
    import shapely
    from skimage.measure import find_contours

    padded = np.pad(mask, 1).astype(np.uint8)
    rings = []
    for c in find_contours(padded, 0.5):
        if len(c) < 4:
            continue
        # (row, col) of pixel centres in the padded crop -> x, y of QuPath's pixel corners
        xy = np.column_stack([c[:, 1] - 1 + x0 + 0.5, c[:, 0] - 1 + y0 + 0.5])
        ring = shapely.Polygon(xy)
        if ring.area > 0:
            rings.append(ring)
    if not rings:
        return None
    geom = rings[0]
    for ring in rings[1:]:
        geom = geom.symmetric_difference(ring)  # even-odd: inner rings become holes
    geom = shapely.make_valid(geom.simplify(0.0)) if not geom.is_valid else geom.simplify(0.0)
    if geom.geom_type == "GeometryCollection":
        geom = shapely.union_all([g for g in geom.geoms if g.geom_type.endswith("Polygon")])
    return shapely.geometry.polygon.orient(geom) if geom.geom_type == "Polygon" else geom


def _json_value(v):
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    f = float(v)
    return f if np.isfinite(f) else None


def labels_to_geojson(
    labels: np.ndarray,
    table: pd.DataFrame | None = None,
    *,
    object_type: str = "detection",
    colours: Mapping[str, str] | None = None,
    metadata: Mapping | None = None,
) -> dict:
    """A GeoJSON ``FeatureCollection`` with one Feature per cell of a 2D label image.

    Parameters
    ----------
    labels : (Y, X) int array
        0 = background.
    table : DataFrame, optional
        The cell table (``label`` column). Its numeric columns become ``measurements``,
        ``class`` the ``classification``. Cells without a row get geometry only; rows
        without a cell are left out.
    object_type : {"detection", "annotation"}
        QuPath's object type (detections are light and not editable; annotations are).
    colours : mapping, optional
        ``{class: colour}``; default :func:`layer_class_colours` of ``metadata`` and the table.
    metadata : mapping, optional
        A layer's metadata (model card, class colours).
    """
    import pandas as pd
    import shapely
    from scipy import ndimage

    from napari_nucleus_ai.cells import validate_cell_table

    if object_type not in OBJECT_TYPES:
        raise InputError(None, f"object type must be one of {OBJECT_TYPES}, got {object_type!r}")
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            None, f"GeoJSON needs 2D integer labels, got {labels.dtype} {labels.shape}"
        )
    table = validate_cell_table(table) if table is not None and len(table) else None
    rows: dict[int, dict] = {}
    measured: list[str] = []
    if table is not None:
        measured = [
            c
            for c in table.columns
            if c not in _NOT_MEASURED
            and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])
        ]
        rows = {int(r["label"]): r for r in table.to_dict("records")}
    if colours is None:
        colours = layer_class_colours(metadata, table if table is not None else pd.DataFrame())
    features = []
    slices = ndimage.find_objects(labels)
    for i, sl in enumerate(slices):
        if sl is None:
            continue
        label = i + 1
        geom = _cell_geometry(labels[sl] == label, sl[0].start, sl[1].start)
        if geom is None or geom.is_empty:
            continue
        props: dict = {"objectType": object_type, "name": f"cell {label}"}
        row = rows.get(label)
        cls = row.get("class") if row is not None else None
        if isinstance(cls, str) and cls:
            colour = colours.get(cls) if colours else None
            props["classification"] = {"name": cls, "color": _rgb(colour or "#9e9e9e")}
        meas = {"label": label}
        if row is not None:
            meas.update({c: _json_value(row[c]) for c in measured})
            meas["label"] = label
        props["measurements"] = meas
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(_UUID_NS, f"cell {label}")),
                "geometry": json.loads(shapely.to_geojson(geom)),
                "properties": props,
            }
        )
    # a GeoJSON "foreign member" (ignored by QuPath): the label image size, for the way back
    return {
        "type": "FeatureCollection",
        "features": features,
        FOREIGN: {"image_shape": [int(n) for n in labels.shape]},
    }


def write_geojson(
    path: str | os.PathLike,
    labels: np.ndarray,
    table: pd.DataFrame | None = None,
    **options,
) -> str:
    """Write :func:`labels_to_geojson` to ``path`` atomically; returns the path."""
    from napari_nucleus_ai.core.files import atomic_write

    doc = labels_to_geojson(labels, table, **options)
    with atomic_write(path, "w") as fh:
        json.dump(doc, fh, allow_nan=False)
    return os.fspath(path)


# ------------------------------------------------------------------ GeoJSON -> labels
def _features(doc, path) -> list[dict]:
    if isinstance(doc, list):
        feats = doc
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features") or []
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, dict) and doc.get("type") in ("Polygon", "MultiPolygon"):
        feats = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise InputError(path, "not GeoJSON Features (no FeatureCollection, Feature or list)")
    return [f for f in feats if isinstance(f, dict) and isinstance(f.get("geometry"), dict)]


def _measurements(props: dict) -> dict:
    m = props.get("measurements") or {}
    if isinstance(m, list):  # QuPath 0.2: [{"name": ..., "value": ...}]
        m = {d.get("name"): d.get("value") for d in m if isinstance(d, dict)}
    return {str(k): v for k, v in m.items() if k is not None}


def _classification(props: dict) -> tuple[str | None, str | None]:
    c = props.get("classification")
    if isinstance(c, str):
        return c, None
    if not isinstance(c, dict):
        return None, None
    name = c.get("name") or (c.get("names") or [None])[0]
    colour = c.get("color", c.get("colorRGB"))
    return (str(name) if name else None), (_hex(_rgb(colour)) if colour is not None else None)


def _polygons(geometry: dict) -> list:
    """Polygons as lists of rings ``(N, 2)`` arrays of x, y."""
    kind = geometry.get("type")
    coords = geometry.get("coordinates") or []
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        polys = coords
    elif kind == "GeometryCollection":
        return [p for g in geometry.get("geometries") or [] for p in _polygons(g)]
    else:
        return []
    return [[np.asarray(r, float)[:, :2] for r in poly if len(r) >= 3] for poly in polys]


def _fill(out: np.ndarray, rings: list, value: int) -> None:
    """Rasterise one polygon (outer ring, holes) into ``out`` with pixel-centre sampling."""
    from skimage.draw import polygon

    if not rings:
        return
    shape = out.shape
    outer = rings[0]
    rr, cc = polygon(outer[:, 1] - 0.5, outer[:, 0] - 0.5, shape)
    mask = np.zeros(shape, bool)
    mask[rr, cc] = True
    for hole in rings[1:]:
        rr, cc = polygon(hole[:, 1] - 0.5, hole[:, 0] - 0.5, shape)
        mask[rr, cc] = False
    out[mask] = value


def geojson_to_labels(
    doc, shape: Sequence[int] | None = None, *, path=None
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Rasterise GeoJSON Features (QuPath's) into a label image and a cell table.

    Parameters
    ----------
    doc : dict or list
        A ``FeatureCollection``, a ``Feature``, or a list of Features.
    shape : (Y, X), optional
        Label image shape; default: the one this plugin recorded when it wrote the file,
        else just large enough for every polygon.
    path : optional
        Named in errors.

    Returns
    -------
    labels : (Y, X) uint32
        A cell's ``measurements["label"]`` when those are unique positive integers, else 1..N
        in the file's order; later Features paint over earlier ones where they overlap.
    table : DataFrame
        ``label``, ``class`` (when classified), ``object_type``, ``name`` and the
        measurements (QuPath names kept).
    colours : dict
        ``{class: "#rrggbb"}`` from the Features' classifications.
    """
    import pandas as pd

    from napari_nucleus_ai.cells import validate_cell_table

    feats = _features(doc, path)
    polys = [_polygons(f["geometry"]) for f in feats]
    keep = [i for i, p in enumerate(polys) if any(len(poly) for poly in p)]
    feats = [feats[i] for i in keep]
    polys = [polys[i] for i in keep]
    if not feats:
        raise InputError(path, "GeoJSON has no Polygon or MultiPolygon features")
    props = [f.get("properties") or {} for f in feats]
    meas = [_measurements(p) for p in props]
    ids = [m.get("label") for m in meas]
    try:
        as_int = [int(v) for v in ids]
        usable = all(float(v) == i and i > 0 for v, i in zip(ids, as_int, strict=True))
        usable = usable and len(set(as_int)) == len(as_int)
    except (TypeError, ValueError):
        usable = False
    labels_of = as_int if usable else list(range(1, len(feats) + 1))
    if shape is None and isinstance(doc, dict):
        shape = (doc.get(FOREIGN) or {}).get("image_shape")
    if shape is None:
        hi = np.max([r.max(axis=0) for p in polys for poly in p for r in poly], axis=0)
        shape = (max(1, int(np.ceil(hi[1]))), max(1, int(np.ceil(hi[0]))))
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise InputError(path, f"GeoJSON labels are 2D, got shape {shape}")
    dtype = np.uint32 if max(labels_of) < 2**32 else np.uint64
    out = np.zeros(shape, dtype)
    colours: dict = {}
    records = []
    for lab, p, pr, m in zip(labels_of, polys, props, meas, strict=True):
        for rings in p:
            _fill(out, rings, lab)
        cls, colour = _classification(pr)
        if cls and colour and cls not in colours:
            colours[cls] = colour
        rec = {**{k: v for k, v in m.items() if k != "label"}, "label": lab}
        rec["object_type"] = pr.get("objectType") or pr.get("object_type") or "annotation"
        if pr.get("name") is not None:
            rec["name"] = str(pr["name"])
        if cls:
            rec["class"] = cls
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    first = ["label"] + (["class"] if "class" in table.columns else [])
    table = table[first + [c for c in table.columns if c not in first]]
    present = set(np.unique(out).tolist()) - {0}
    table = table[table["label"].isin(present)].reset_index(drop=True)
    return out, validate_cell_table(table, path), colours


def read_geojson(
    path: str | os.PathLike, shape: Sequence[int] | None = None
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Read a (QuPath) GeoJSON file into ``(labels, table, colours)``; see :func:`geojson_to_labels`."""
    from napari_nucleus_ai.core.files import check_readable

    check_readable(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not valid JSON ({' '.join(str(e).split())[:100]})") from None
    return geojson_to_labels(doc, shape, path=path)


# ------------------------------------------------------------------ family protocol (io)
def sniff(path: str | os.PathLike) -> bool:
    """A ``.geojson`` file (or ``.json``) that starts like GeoJSON."""
    p = os.fspath(path)
    if not os.path.isfile(p) or not p.lower().endswith((".geojson", ".json")):
        return False
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    head = "".join(head.split())
    return head.startswith(("[", "{")) and (
        '"type":"Feature' in head or '"geometry"' in head or head == "[]"
    )


def describe(path: str | os.PathLike) -> dict:
    """``info --json`` for a GeoJSON file: cells, classes, object types, extent."""
    labels, table, colours = read_geojson(path)
    counts = table["class"].value_counts().to_dict() if "class" in table.columns else {}
    return {
        "kind": "labels",
        "format": "geojson",
        "reader": "napari_nucleus_ai.io.geojson",
        "path": os.fspath(path),
        "cells": len(table),
        "shape": list(labels.shape),
        "object_types": sorted(table["object_type"].astype(str).unique().tolist()),
        "classes": {str(k): int(v) for k, v in counts.items()},
        "class_colours": colours,
        "measurements": [
            c for c in table.columns if c not in ("label", "class", "object_type", "name")
        ],
    }


def read_layers(path: str | os.PathLike, **options) -> list:
    """One Labels layer (the cell table in ``features``, class colours in ``metadata``)."""
    from napari_nucleus_ai.cells import to_features

    labels, table, colours = read_geojson(path, options.get("shape"))
    name = options.get("name") or os.path.splitext(os.path.basename(os.fspath(path)))[0]
    meta = {"path": os.fspath(path), "format": "geojson", "unit": "px"}
    if colours:
        meta["class_colors"] = colours
        meta["classes"] = list(colours)
    return [(labels, {"name": name, "features": to_features(table), "metadata": meta}, "labels")]


# ------------------------------------------------------------------ npe2 writer
def write_geojson_layer(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: a (classified) Labels layer -> QuPath GeoJSON (polygons in pixels).

    The cell table is the layer's ``features`` (measured from the labels when it has none);
    class colours come from its model card (``metadata``). 3D labels are refused.
    """
    import pandas as pd

    from napari_nucleus_ai.cells import from_features, measure_cells

    if isinstance(data, list):  # multiscale labels: the full resolution
        data = data[0]
    labels = np.asarray(data)
    feats = meta.get("features")
    table = None
    if feats is not None and len(pd.DataFrame(feats)) and "label" in pd.DataFrame(feats).columns:
        table = from_features(pd.DataFrame(feats))
    elif labels.ndim == 2 and np.issubdtype(labels.dtype, np.integer):
        table = measure_cells(labels)
    path = os.fspath(path)
    if not path.lower().endswith(EXTENSIONS):
        path += ".geojson"
    return [write_geojson(path, labels, table, metadata=meta.get("metadata") or {})]
