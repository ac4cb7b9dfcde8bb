"""Binary localization files: Picasso HDF5 + YAML, DECODE HDF5, SMAP ``_sml.mat``, ShareLoc ``.smlm``."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER
from napari_nucleus_ai.localizations.detect import MAT73
from napari_nucleus_ai.localizations.table import LocalizationTable, normalise


def _open_h5(path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        with open(path, "rb") as fh:
            magic = fh.read(520)
        if magic.startswith(MAT73):  # MATLAB 7.3 = HDF5 after a 512-byte header
            raise InputError(path, "truncated or corrupt MATLAB 7.3 (HDF5) file") from e
        if not magic.startswith(b"\x89HDF"):
            raise InputError(path, "not an HDF5 file (the content is not HDF5)") from e
        raise InputError(path, "truncated or corrupt HDF5 file") from e


def read_bad_hdf5(path, **_):
    """A file that claims to be HDF5 by name but cannot be opened: say why, in one line."""
    with _open_h5(path) as h:
        keys = list(h.keys())
    raise InputError(path, f"HDF5 file without localizations (groups: {keys})")


# ------------------------------------------------------------------ Picasso
def picasso_pixel_size(path) -> float | None:
    """``Pixelsize`` (nm) from the last YAML document of ``<stem>.yaml`` that has one."""
    import yaml

    yaml_path = os.path.splitext(os.fspath(path))[0] + ".yaml"
    if not os.path.exists(yaml_path):
        return None
    try:
        with open(yaml_path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if isinstance(d, dict)]
    except yaml.YAMLError as e:
        raise InputError(yaml_path, f"unreadable Picasso YAML ({e.__class__.__name__})") from e
    size = None
    for doc in docs:
        if doc.get("Pixelsize") is not None:
            size = float(doc["Pixelsize"])
    return size


#: attribute / dataset names under which Picasso-like writers keep metadata inside the HDF5
_INFO_KEYS = ("info", "metadata", "info.yaml", "yaml", "Info")


def picasso_embedded_info(h) -> list[dict]:
    """Metadata documents kept inside the HDF5 (newer Picasso keeps no ``.yaml`` beside it).

    Looked for, in order: root and ``locs`` attributes that are themselves metadata keys
    (``Pixelsize``...), then attributes or datasets named like :data:`_INFO_KEYS` holding
    YAML or JSON text (one or several documents). Never raises; [] when none.
    """
    import yaml

    docs: list[dict] = []
    holders = [h.attrs]
    if "locs" in h:
        holders.append(h["locs"].attrs)
    for attrs in holders:
        plain = {}
        for key in attrs:
            try:
                v = attrs[key]
            except Exception:  # noqa: BLE001 - an attribute h5py cannot decode
                continue
            if key in _INFO_KEYS:
                docs.extend(_parse_info_text(v, yaml))
            elif np.ndim(v) == 0:
                plain[key] = v.item() if isinstance(v, np.generic) else v
        if plain:
            docs.append(plain)
    for key in _INFO_KEYS:
        if key in h and getattr(h[key], "dtype", None) is not None:
            try:
                docs.extend(_parse_info_text(h[key][()], yaml))
            except Exception:  # noqa: BLE001 - not text
                continue
    return docs


def _parse_info_text(value, yaml) -> list[dict]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            out.extend(_parse_info_text(v, yaml))
        return out
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return []
    try:
        return [d for d in yaml.safe_load_all(value) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def _last_pixelsize(docs) -> float | None:
    size = None
    for doc in docs:
        for key in ("Pixelsize", "pixelsize", "pixel_size", "Pixel Size"):
            if doc.get(key) is not None:
                try:
                    size = float(doc[key])
                except (TypeError, ValueError):
                    continue
                break
    return size


def read_picasso(path, pixel_size_nm=None, **_) -> LocalizationTable:
    """Picasso ``*_locs.hdf5``: ``x, y, lpx, lpy`` in camera pixels -> nm; frames from 0.

    The pixel size comes from the ``.yaml`` beside the file (the last document with
    ``Pixelsize``), else metadata kept inside the HDF5 (:func:`picasso_embedded_info`),
    else ``pixel_size_nm`` (``--camera-pixel``: for files that do not record it).
    """
    with _open_h5(path) as h:
        try:
            locs = h["locs"][()]
        except (KeyError, OSError) as e:
            raise InputError(path, "Picasso file with an unreadable 'locs' table") from e
        embedded = picasso_embedded_info(h)
    px, source = picasso_pixel_size(path), "yaml"
    if not px:
        px, source = _last_pixelsize(embedded), "hdf5"
    if not px:
        px, source = pixel_size_nm, "given"
    if not px:
        raise InputError(
            path,
            "Picasso positions are in camera pixels and no Pixelsize was found "
            "in a .yaml beside it or inside the HDF5; pass --camera-pixel NM",
        )
    raw = pd.DataFrame({name: locs[name] for name in locs.dtype.names})
    names = set(raw.columns)
    mapping = {"x_nm": "x", "y_nm": "y", "frame": "frame"}
    factors = {"x_nm": px, "y_nm": px}
    if "z" in names:
        mapping["z_nm"] = "z"  # Picasso stores z in nm
    if "photons" in names:
        mapping["photons"] = "photons"
    if {"lpx", "lpy"} <= names:
        raw["precision_nm"] = (raw["lpx"].astype(float) + raw["lpy"].astype(float)) / 2 * px
        mapping["precision_nm"] = "precision_nm"
    if "channel" in names:
        mapping["channel"] = "channel"
    return normalise(
        raw,
        mapping,
        path=path,
        fmt="picasso",
        factors=factors,
        metadata={"pixel_size_nm": px, "pixel_size_source": source},
    )


# ------------------------------------------------------------------ DECODE h5
def read_decode_h5(path, pixel_size_nm=None, allow_empty=False, **_) -> LocalizationTable:
    """DECODE ``.h5``: ``data/xyz`` (N, 3), ``xyz_sig``, ``phot``, ``frame_ix``...; ``meta`` attrs
    ``px_size`` and ``xy_unit`` (``px`` -> multiplied by ``px_size``; z is nm)."""
    with _open_h5(path) as h:
        data = h["data"]
        meta = dict(h["meta"].attrs) if "meta" in h else {}
        cols = {}
        for key, ds in data.items():
            if ds.shape is None:
                continue  # DECODE writes empty datasets for fields it did not compute
            v = ds[()]
            if v.ndim == 2 and v.shape[1] == 3:
                for i, axis in enumerate("xyz"):
                    cols[f"{key}_{axis}" if key != "xyz" else axis] = v[:, i]
            elif v.ndim == 1:
                cols[key] = v
    raw = pd.DataFrame(cols)
    unit = meta.get("xy_unit", "nm")
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    factors = {}
    if unit == "px":
        px = meta.get("px_size", pixel_size_nm)
        if px is None:
            raise InputError(
                path, "DECODE positions in pixels and no meta/px_size; pass --camera-pixel NM"
            )
        px = np.broadcast_to(np.asarray(px, float), (2,))
        factors = {"x_nm": float(px[0]), "y_nm": float(px[1])}
    mapping = {"x_nm": "x", "y_nm": "y", "z_nm": "z", "frame": "frame_ix", "photons": "phot"}
    mapping = {k: v for k, v in mapping.items() if v in raw.columns}
    if {"xyz_sig_x", "xyz_sig_y"} <= set(raw.columns):
        raw["precision_nm"] = (
            raw["xyz_sig_x"] * factors.get("x_nm", 1.0)
            + raw["xyz_sig_y"] * factors.get("y_nm", 1.0)
        ) / 2
        mapping["precision_nm"] = "precision_nm"
    meta_out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in meta.items()}
    return normalise(
        raw,
        mapping,
        path=path,
        fmt="decode-h5",
        factors=factors,
        metadata=meta_out,
        allow_empty=allow_empty,
    )


# ------------------------------------------------------------------ SMAP
SMAP_MAP = {
    "x_nm": "xnm",
    "y_nm": "ynm",
    "z_nm": "znm",
    "frame": "frame",
    "photons": "phot",
    "precision_nm": "locprecnm",
    "channel": "channel",
}


def read_smap(path, **_) -> LocalizationTable:
    """SMAP ``_sml.mat`` (MATLAB 7.3 = HDF5): ``saveloc/loc`` fields as (1, N) arrays, nm."""
    with _open_h5(path) as h:
        if "saveloc" not in h or "loc" not in h["saveloc"]:
            raise InputError(path, "MATLAB file without SMAP 'saveloc/loc' localizations")
        loc = h["saveloc/loc"]
        cols = {}
        n = None
        for key, ds in loc.items():
            if not hasattr(ds, "shape") or ds.dtype.kind not in "fiub" or len(ds.shape) != 2:
                continue
            v = ds[()].reshape(-1)
            if n is None:
                n = v.size
            if v.size == n:
                cols[key] = v
    raw = pd.DataFrame(cols)
    mapping = {k: v for k, v in SMAP_MAP.items() if v in raw.columns}
    return normalise(raw, mapping, path=path, fmt="smap")


# ------------------------------------------------------------------ ShareLoc .smlm
def read_smlm(path, **_) -> LocalizationTable:
    """ShareLoc ``.smlm``: a zip with ``manifest.json`` and row-major binary tables.

    Each ``files`` entry of type ``table`` names a ``formats`` entry whose ``headers``
    and ``dtype`` give the packed record layout; positions are nm unless ``units``
    say otherwise. The ``channel`` of each file becomes ``channel``.
    """
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            frames = []
            for entry in manifest.get("files", []):
                if entry.get("type") != "table":
                    continue
                fmt = manifest["formats"][entry["format"]]
                if fmt.get("mode", "binary") != "binary":
                    raise InputError(path, f"unsupported .smlm table mode {fmt.get('mode')!r}")
                headers = fmt["headers"]
                dtype = np.dtype(
                    [
                        (h, np.dtype(d).newbyteorder("<"))
                        for h, d in zip(headers, fmt["dtype"], strict=True)
                    ]
                )
                buf = z.read(entry["name"])
                rows = int(entry.get("rows", len(buf) // dtype.itemsize))
                if rows * dtype.itemsize > len(buf):
                    raise InputError(path, f"table {entry['name']} is truncated")
                arr = np.frombuffer(buf, dtype=dtype, count=rows)
                df = pd.DataFrame({h: arr[h] for h in headers})
                df["channel"] = str(entry.get("channel", "0"))
                units = dict(zip(headers, fmt.get("units", [""] * len(headers)), strict=False))
                frames.append((df, units))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(
            path, f"not a readable ShareLoc .smlm file ({e.__class__.__name__}: {e})"
        ) from e
    if not frames:
        raise InputError(path, ".smlm manifest lists no localization table")
    raw = pd.concat([f for f, _ in frames], ignore_index=True)
    units = frames[0][1]
    mapping = {"channel": "channel"}
    for std, names in (
        ("x_nm", ("position_x", "x")),
        ("y_nm", ("position_y", "y")),
        ("z_nm", ("position_z", "z")),
        ("frame", ("frame",)),
        ("photons", ("photons", "intensity")),
        ("precision_nm", ("uncertainty", "precision", "uncertainty_x")),
    ):
        for n in names:
            if n in raw.columns:
                mapping[std] = n
                break
    factors = {}
    for std in ("x_nm", "y_nm", "z_nm"):
        unit = str(units.get(mapping.get(std, ""), "")).lower()
        factors[std] = NM_PER.get(unit, 1.0)
    return normalise(
        raw,
        mapping,
        path=path,
        fmt="smlm",
        factors=factors,
        metadata={"manifest_name": manifest.get("name")},
    )
