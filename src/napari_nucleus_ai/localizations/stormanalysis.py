"""Zhuang-lab formats: storm-analysis HDF5 (3D-DAOSTORM, sCMOS, Spliner) and Insight3 ``.bin``.

storm-analysis HDF5
    Root attributes ``sa_type``, ``version``, ``pixel_size`` (nm), ``movie_x/y/l``,
    ``n_channels``; one group ``fr_N`` per analysed frame (N from 0) holding one dataset
    per property: ``x``, ``y`` in camera pixels, ``z`` in microns, ``height``, ``sum``,
    ``background``, ``xsigma``, ``ysigma`` (pixels), ``error``... Channel k > 0 keeps its
    datasets under the prefix ``ck_``. Each group carries drift attributes ``dx, dy``
    (pixels) and ``dz`` (microns) that storm-analysis adds when it reads the positions
    (we do the same). Tracked files add ``tracks/tracks_N`` groups of averaged
    localizations (``x, y, z`` and ``track_length``...), read with ``tracks=True``.
Insight3 / N-STORM ``.bin`` molecule list
    ``M425``, then int32 frames, int32 status (6 = closed properly), int32 molecule
    count, then records of 18 little-endian 4-byte fields (:data:`I3_DTYPE`). ``x, y``
    (and drift-corrected ``xc, yc``, preferred) are one-based camera pixels: we subtract
    one, as storm-analysis does when it converts, so both formats share the origin;
    ``z`` / ``zc`` are nm. Insight3's camera pixel is 160 nm unless told otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.table import LocalizationTable, normalise

#: Insight3 molecule record (storm-analysis ``i3dtype``), little-endian.
I3_DTYPE = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("xc", "<f4"),
        ("yc", "<f4"),
        ("h", "<f4"),
        ("a", "<f4"),
        ("w", "<f4"),
        ("phi", "<f4"),
        ("ax", "<f4"),
        ("bg", "<f4"),
        ("i", "<f4"),
        ("c", "<i4"),
        ("fi", "<i4"),
        ("fr", "<i4"),
        ("tl", "<i4"),
        ("lk", "<i4"),
        ("z", "<f4"),
        ("zc", "<f4"),
    ]
)
I3_HEADER = np.dtype([("magic", "S4"), ("frames", "<i4"), ("status", "<i4"), ("molecules", "<i4")])
#: Insight3's default camera pixel (nm) when the user gives none.
INSIGHT3_PIXEL_NM = 160.0


# ------------------------------------------------------------------ storm-analysis HDF5
def _attr(attrs, key, default=None):
    v = attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    return v


def read_storm_analysis(
    path, pixel_size_nm=None, tracks: bool = False, drift_corrected: bool = True, **_
) -> LocalizationTable:
    """storm-analysis HDF5 -> nm (x/y times ``pixel_size``, z microns times 1000).

    Parameters
    ----------
    pixel_size_nm : float, optional
        Camera pixel for files without the ``pixel_size`` attribute (it wins over the
        attribute only when the file has none).
    tracks : bool
        Read the averaged ``tracks`` instead of the per-frame localizations.
    drift_corrected : bool
        Add each frame's ``dx, dy, dz`` (as storm-analysis does by default).
    """
    from napari_nucleus_ai.localizations.binary import _open_h5

    with _open_h5(path) as h:
        attrs = h.attrs
        px = _attr(attrs, "pixel_size") or pixel_size_nm
        n_channels = int(_attr(attrs, "n_channels", 1) or 1)
        meta = {
            k: _attr(attrs, k)
            for k in ("sa_type", "version", "movie_x", "movie_y", "movie_l", "n_channels")
            if k in attrs
        }
        n_tracks = 0
        if "tracks" in h:
            n_tracks = int(
                sum(int(_attr(g.attrs, "n_tracks", len(g["x"]))) for g in h["tracks"].values())
            )
        meta["n_tracks"] = n_tracks
        if tracks:
            if not n_tracks:
                raise InputError(path, "storm-analysis file has no tracks (it was not tracked)")
            raw = _read_tracks(h)
            drift = False
        else:
            raw, drift = _read_frames(h, n_channels, drift_corrected)
    if not px:
        raise InputError(
            path,
            "storm-analysis positions are in camera pixels and the file has no pixel_size "
            "attribute; pass --camera-pixel NM",
        )
    px = float(px)
    meta.update(pixel_size_nm=px, drift_corrected=drift, source="tracks" if tracks else "frames")
    mapping = {"x_nm": "x", "y_nm": "y", "frame": "frame", "channel": "channel"}
    factors = {"x_nm": px, "y_nm": px, "z_nm": 1000.0}
    names = set(raw.columns)
    if "z" in names:
        mapping["z_nm"] = "z"
    if "sum" in names:
        mapping["photons"] = "sum"  # integrated peak (photo-electrons after the gain)
    for sigma in ("xsigma", "ysigma"):
        if sigma in names:
            raw[f"{sigma}_nm"] = raw[sigma].astype(float) * px
    raw = raw.drop(columns=[c for c in ("xsigma", "ysigma") if c in names])
    return normalise(raw, mapping, path=path, fmt="storm-analysis", factors=factors, metadata=meta)


def _frame_groups(h) -> list[tuple[int, object]]:
    out = []
    for key, grp in h.items():
        if key.startswith("fr_") and key[3:].isdigit() and hasattr(grp, "keys"):
            out.append((int(key[3:]), grp))
    return sorted(out, key=lambda t: t[0])


def _read_frames(h, n_channels: int, drift_corrected: bool):
    parts = []
    drift = False
    for frame, grp in _frame_groups(h):
        if "x" not in grp or int(_attr(grp.attrs, "n_locs", len(grp["x"]))) == 0:
            continue
        dx, dy, dz = (float(_attr(grp.attrs, k, 0.0) or 0.0) for k in ("dx", "dy", "dz"))
        for ch in range(max(1, n_channels)):
            prefix = "" if ch == 0 else f"c{ch}_"
            if f"{prefix}x" not in grp:
                continue
            cols = {}
            for name, ds in grp.items():
                if (
                    ch == 0
                    and name[:1] == "c"
                    and "_" in name
                    and name[1 : name.index("_")].isdigit()
                ):
                    continue  # another channel's dataset
                if ch and not name.startswith(prefix):
                    continue
                v = ds[()]
                if getattr(v, "ndim", 0) == 1:
                    cols[name[len(prefix) :]] = v
            df = pd.DataFrame(cols)
            if drift_corrected and ch == 0 and (dx or dy or dz):
                drift = True
                df["x"] = df["x"] + dx
                df["y"] = df["y"] + dy
                if "z" in df:
                    df["z"] = df["z"] + dz
            df["frame"] = frame
            df["channel"] = str(ch)
            parts.append(df)
    if not parts:
        return pd.DataFrame({"x": [], "y": [], "frame": [], "channel": []}), drift
    return pd.concat(parts, ignore_index=True), drift


def _read_tracks(h) -> pd.DataFrame:
    groups = sorted(
        h["tracks"].items(),
        key=lambda kv: int(kv[0].rsplit("_", 1)[-1]) if kv[0][-1].isdigit() else 0,
    )
    parts = []
    for _, grp in groups:
        parts.append(
            pd.DataFrame({k: ds[()] for k, ds in grp.items() if getattr(ds, "ndim", 0) == 1})
        )
    df = pd.concat(parts, ignore_index=True)
    df["channel"] = "0"
    if "frame" not in df:
        df["frame"] = 0
    return df


# ------------------------------------------------------------------ Insight3 .bin
def read_insight3_header(path) -> dict:
    """``{"frames", "status", "molecules"}`` of an Insight3 ``.bin`` (raises on a bad header)."""
    with open(path, "rb") as fh:
        raw = fh.read(I3_HEADER.itemsize)
    if len(raw) < I3_HEADER.itemsize or not raw.startswith(b"M425"):
        raise InputError(path, "not an Insight3 molecule list (no 'M425' header)")
    hdr = np.frombuffer(raw, I3_HEADER)[0]
    return {k: int(hdr[k]) for k in ("frames", "status", "molecules")}


def read_insight3(
    path, pixel_size_nm=None, prefer_corrected: bool = True, **_
) -> LocalizationTable:
    """Insight3 ``.bin``: the master molecule list, one-based pixels -> nm.

    ``pixel_size_nm`` defaults to Insight3's 160 nm (the file does not record it; the
    table's metadata says which was used). Status other than 6 (not closed properly)
    and a molecule count larger than the file are one-line errors.
    """
    hdr = read_insight3_header(path)
    n = hdr["molecules"]
    if hdr["status"] != 6:
        raise InputError(
            path, f"Insight3 file was not closed properly (status {hdr['status']}, expected 6)"
        )
    size = os.path.getsize(path)
    available = (size - I3_HEADER.itemsize) // I3_DTYPE.itemsize
    if n < 0 or n > available:
        raise InputError(
            path,
            f"Insight3 header lists {n} molecules but the file holds at most {available} "
            "(truncated?)",
        )
    data = np.fromfile(path, dtype=I3_DTYPE, count=n, offset=I3_HEADER.itemsize)
    px = float(pixel_size_nm or INSIGHT3_PIXEL_NM)
    raw = pd.DataFrame({name: data[name] for name in I3_DTYPE.names})
    xcol, ycol, zcol = ("xc", "yc", "zc") if prefer_corrected else ("x", "y", "z")
    raw["x_px0"] = raw[xcol].astype(float) - 1.0  # one-based -> zero-based pixel
    raw["y_px0"] = raw[ycol].astype(float) - 1.0
    mapping = {
        "x_nm": "x_px0",
        "y_nm": "y_px0",
        "z_nm": zcol,
        "frame": "fr",
        "photons": "i",
        "channel": "c",
    }
    meta = dict(
        hdr,
        pixel_size_nm=px,
        pixel_size_default=pixel_size_nm is None,
        drift_corrected_columns=prefer_corrected,
    )
    return normalise(
        raw.drop(columns=[xcol, ycol]),
        mapping,
        path=path,
        fmt="insight3",
        factors={"x_nm": px, "y_nm": px},
        metadata=meta,
    )


def write_insight3(df: pd.DataFrame, path, pixel_size_nm: float = INSIGHT3_PIXEL_NM) -> str:
    """Write a normalised table as an Insight3 ``.bin`` (the documented layout; tests use it)."""
    from napari_nucleus_ai.core.files import atomic_write

    n = len(df)
    rec = np.zeros(n, I3_DTYPE)
    x = df["x_nm"].to_numpy(float) / pixel_size_nm + 1.0
    y = df["y_nm"].to_numpy(float) / pixel_size_nm + 1.0
    z = df["z_nm"].to_numpy(float) if "z_nm" in df else np.zeros(n)
    for name, v in (("x", x), ("xc", x), ("y", y), ("yc", y), ("z", z), ("zc", z)):
        rec[name] = v
    rec["fr"] = df["frame"].to_numpy() if "frame" in df else 1
    rec["i"] = df["photons"].fillna(0).to_numpy() if "photons" in df else 0
    rec["c"] = 1
    rec["w"], rec["ax"], rec["lk"], rec["tl"] = 300.0, 1.0, -1, 1
    frames = int(rec["fr"].max()) if n else 0
    hdr = np.array([(b"M425", frames, 6, n)], I3_HEADER)
    with atomic_write(path, "wb") as fh:
        fh.write(hdr.tobytes())
        fh.write(rec.tobytes())
        fh.write(np.zeros(1, "<i4").tobytes())  # an empty per-frame list, as writers leave
    return str(path)
