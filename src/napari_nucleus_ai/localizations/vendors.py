"""Instrument exports: Zeiss Elyra TXT, ONI Nanoimager CSV, Bruker Vutara CSV, rapidSTORM TXT."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.detect import head_text
from napari_nucleus_ai.localizations.table import LocalizationTable, normalise


def _fail(path, what, e) -> InputError:
    return InputError(path, f"not a readable {what} ({' '.join(str(e).split())[:160]})")


# ------------------------------------------------------------------ Zeiss Elyra
def read_elyra(path, **_) -> LocalizationTable:
    """Zeiss Elyra (ZEN) TXT: tab-separated table, then a NUL byte and a metadata trailer."""
    with open(path, "rb") as fh:
        raw_bytes = fh.read()
    body, _, trailer = raw_bytes.partition(b"\x00")
    text = body.decode("latin-1").replace("\r\r\n", "\n").replace("\r\n", "\n")
    try:
        raw = pd.read_csv(io.StringIO(text), sep="\t")
    except (pd.errors.ParserError, ValueError) as e:
        raise _fail(path, "Zeiss Elyra TXT", e) from e
    raw.columns = [str(c).strip() for c in raw.columns]
    mapping = {
        "x_nm": "Position X [nm]",
        "y_nm": "Position Y [nm]",
        "z_nm": "Position Z [nm]" if "Position Z [nm]" in raw.columns else None,
        "frame": "First Frame",
        "photons": "Number Photons",
        "precision_nm": "Precision [nm]",
        "channel": "Channel" if "Channel" in raw.columns else None,
    }
    meta = {}
    for line in trailer.decode("latin-1").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            meta[key.strip()] = value.strip()
    return normalise(raw, mapping, path=path, fmt="elyra", metadata={"instrument": meta})


# ------------------------------------------------------------------ ONI Nanoimager
def read_oni(path, **_) -> LocalizationTable:
    """ONI Nanoimager CSV: ``Channel,Frame,X (nm),Y (nm),Z (nm),...`` or newer ``x-nm,y-nm``."""
    lines = head_text(path, 16384).split("\n")[:2]
    skip = 0 if "x (nm)" in lines[0].lower() or "x-nm" in lines[0].lower() else 1
    try:
        raw = pd.read_csv(path, skiprows=skip)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise _fail(path, "ONI Nanoimager CSV", e) from e
    raw.columns = [str(c).strip() for c in raw.columns]
    low = {c.lower(): c for c in raw.columns}

    def pick(*names):
        return next((low[n] for n in names if n in low), None)

    mapping = {
        "x_nm": pick("x (nm)", "x-nm", "x_nm"),
        "y_nm": pick("y (nm)", "y-nm", "y_nm"),
        "z_nm": pick("z (nm)", "z-nm", "z_nm"),
        "frame": pick("frame"),
        "photons": pick("photons"),
        "precision_nm": pick("x precision (nm)", "localization precision (nm)", "precision-nm"),
        "channel": pick("channel"),
    }
    return normalise(raw, mapping, path=path, fmt="oni")


# ------------------------------------------------------------------ Bruker Vutara
def read_vutara(path, **_) -> LocalizationTable:
    """Bruker Vutara SRX CSV (``frame,image-ID,...,x,y,z,precisionx,...,photon-count``).

    The export does not name its units. Positions are read as nm unless the
    precision column says otherwise: a median ``precisionx`` below 1 can only be
    micrometres (no fit is that precise in nm), and then everything is scaled by 1000.
    """
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise _fail(path, "Bruker Vutara CSV", e) from e
    raw.columns = [str(c).strip() for c in raw.columns]
    cols = set(raw.columns)
    mapping = {
        "x_nm": "x",
        "y_nm": "y",
        "z_nm": "z" if "z" in cols else None,
        "frame": "frame" if "frame" in cols else None,
        "photons": "photon-count" if "photon-count" in cols else None,
        "precision_nm": "precisionx" if "precisionx" in cols else None,
        "channel": "probe" if "probe" in cols else None,
    }
    factor = 1.0
    if "precisionx" in cols and len(raw) and np.nanmedian(raw["precisionx"]) < 1.0:
        factor = 1000.0
    factors = {k: factor for k in ("x_nm", "y_nm", "z_nm", "precision_nm")}
    return normalise(
        raw, mapping, path=path, fmt="vutara", factors=factors, metadata={"unit_factor": factor}
    )


# ------------------------------------------------------------------ rapidSTORM
_FIELD = re.compile(r"<field\s+([^>]*?)/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_RAPID_UNITS = {"nanometer": 1.0, "micrometer": 1000.0, "meter": 1e9, "m": 1e9}


def _rapid_fields(header: str) -> tuple[list[dict], list[dict]]:
    """Top-level ``<field>``s and those of a nested child ``<localizations>`` (tracked files)."""
    body = header.split("<localizations", 1)[-1]
    parent, _, child = body.partition("<localizations")
    top = [dict(_ATTR.findall(m.group(1))) for m in _FIELD.finditer(parent)]
    kids = [dict(_ATTR.findall(m.group(1))) for m in _FIELD.finditer(child)]
    return top, kids


def read_rapidstorm(path, **_) -> LocalizationTable:
    """rapidSTORM TXT: an XML ``<localizations>`` header line, then space-separated rows.

    Columns follow the ``<field identifier=...>`` order: ``Position-0-0`` x,
    ``Position-1-0`` y, ``Position-2-0`` z, ``ImageNumber-0-0`` frame,
    ``Amplitude-0-0`` (A/D counts, kept as an extra column). Tracked files nest a child
    ``<localizations>`` block in the header that repeats the field names; each row then
    holds the track's values, the number of its localizations and their values. The
    track values are read (one row per track) with the count as ``track_length``.
    """
    with open(path, encoding="latin-1") as fh:
        header = fh.readline()
        body = fh.read()
    fields, children = _rapid_fields(header)
    if not fields:
        raise InputError(path, "rapidSTORM header lists no <field> columns")
    names = [f.get("identifier", f"field{i}") for i, f in enumerate(fields)]
    k = len(names)
    tracked = bool(children)
    width = k + 1 if tracked else k
    cols = [*names, "track_length"] if tracked else names
    try:
        if tracked:
            raise ValueError("rows of tracked files have variable lengths")
        raw = pd.read_csv(io.StringIO(body), sep=r"\s+", header=None, names=cols, usecols=range(k))
    except (pd.errors.ParserError, ValueError):
        rows = [line.split()[:width] for line in body.splitlines() if line.strip()]
        short = next((i for i, r in enumerate(rows) if len(r) < width), None)
        if short is not None:
            raise InputError(
                path, f"rapidSTORM row {short + 2} has fewer values than the header's {width}"
            ) from None
        try:
            values = np.asarray(rows, dtype=float).reshape(-1, width)
        except ValueError as e:
            raise _fail(path, "rapidSTORM TXT", e) from None
        raw = pd.DataFrame(values, columns=cols)
    if tracked:
        raw["track_length"] = raw["track_length"].astype(np.int64)
    mapping, factors = {}, {}
    for std, ident in (
        ("x_nm", "Position-0-0"),
        ("y_nm", "Position-1-0"),
        ("z_nm", "Position-2-0"),
    ):
        if ident in names:
            mapping[std] = ident
            unit = fields[names.index(ident)].get("unit", "nanometer")
            factors[std] = _RAPID_UNITS.get(unit, 1.0)
    if "ImageNumber-0-0" in names:
        mapping["frame"] = "ImageNumber-0-0"
    for ident in names:
        if ident.startswith("Amplitude") and "photon" in fields[names.index(ident)].get("unit", ""):
            mapping["photons"] = ident
    meta = {"fields": fields, "tracked": tracked}
    if tracked:
        meta["child_fields"] = [f.get("identifier") for f in children]
    return normalise(raw, mapping, path=path, fmt="rapidstorm", factors=factors, metadata=meta)
