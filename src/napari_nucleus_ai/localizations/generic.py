"""Any delimited table (CSV/TSV/space) through column aliases or a user mapping; DECODE CSV.

Columns are recognised case-insensitively by name with units in ``[..]`` or ``(..)``
(``x``, ``x_nm``, ``position_x``, ``X (nm)``, ``xnm``...; units nm, um/µm, px). When
no x/y pair is found the reader raises an :class:`InputError` asking for a
``mapping={"x_nm": column, "y_nm": column, ...}``, which the Localizations dock builds.
"""

from __future__ import annotations

import re

import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER
from napari_nucleus_ai.localizations.detect import (
    ALIASES,
    comment_lines,
    first_lines,
    head_text,
    split_unit,
)
from napari_nucleus_ai.localizations.table import STANDARD, LocalizationTable, normalise


def guess_mapping(columns) -> tuple[dict, dict]:
    """``(mapping, units)`` from column names using :data:`ALIASES`."""
    bases = {}
    for c in columns:
        base, unit = split_unit(c)
        bases.setdefault(base, (c, unit))
    mapping, units = {}, {}
    for std, names in ALIASES.items():
        for n in names:
            if n in bases:
                mapping[std] = bases[n][0]
                units[std] = bases[n][1]
                break
    return mapping, units


def separator(lines: list[str]) -> str:
    line = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    return r"\s+"


def read_table(path, comment_lines: int = 0) -> pd.DataFrame:
    lines = first_lines(head_text(path, 16384), 8 + comment_lines)[comment_lines:]
    try:
        raw = pd.read_csv(path, sep=separator(lines), skiprows=comment_lines)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable table ({' '.join(str(e).split())[:160]})") from e
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw


def read_csv_table(
    path,
    mapping: dict | None = None,
    scale_nm: float | None = None,
    pixel_size_nm=None,
    fmt: str = "csv",
    **_,
) -> LocalizationTable:
    """Read any delimited table (leading ``#`` comment lines are skipped).

    Parameters
    ----------
    mapping : dict, optional
        ``{standard column: file column}``; guessed from names when omitted.
    scale_nm : float, optional
        Multiply positions and precision by this to get nm (1000 for µm, the camera
        pixel size for pixels). Default: from units in the column names, else 1 (nm).
    pixel_size_nm : float, optional
        Camera pixel for columns whose unit is ``px``; with an explicit ``mapping`` also
        for mapped x/y/precision columns whose names carry no unit (the user said which
        columns they are and that they are in pixels: ``--columns`` + ``--camera-pixel``).
    fmt : str
        The format name the table reports (``csv``, ``vlume``, ``smlm-challenge``).
    """
    skip = comment_lines(head_text(path, 1 << 20))
    raw = read_table(path, comment_lines=skip)
    explicit = bool(mapping)
    if mapping:
        bad = [v for v in mapping.values() if v is not None and v not in raw.columns]
        if bad:
            raise InputError(
                path,
                f"mapped column(s) {bad} (--columns) not in the file (columns: {list(raw.columns)})",
            )
        units = {k: split_unit(v)[1] for k, v in mapping.items() if v is not None}
        if pixel_size_nm and scale_nm is None:
            for std in ("x_nm", "y_nm", "precision_nm"):
                if std in units and units[std] is None:
                    units[std] = "px"
    else:
        mapping, units = guess_mapping(raw.columns)
    factors = _factors(path, units, scale_nm, pixel_size_nm)
    meta = {"comment_lines": skip} if skip else {}
    if explicit:
        meta["mapping_given"] = True
    if pixel_size_nm and any(u in ("px", "pixel", "pixels") for u in units.values()):
        meta["pixel_size_nm"] = float(pixel_size_nm)
    return normalise(raw, mapping, path=path, fmt=fmt, factors=factors, metadata=meta)


def read_vlume(path, **options) -> LocalizationTable:
    """vLUME CSV: ``#`` comment lines (``#LUME VERSION``...), then a table in nm."""
    return read_csv_table(path, fmt="vlume", **options)


def read_smlm_challenge(path, **options) -> LocalizationTable:
    """SMLM-challenge CSV: ``frame, xnano, ynano, znano, intensity`` (nm)."""
    return read_csv_table(path, fmt="smlm-challenge", **options)


def _factors(path, units: dict, scale_nm, pixel_size_nm) -> dict:
    factors = {}
    for std in ("x_nm", "y_nm", "z_nm", "precision_nm"):
        if scale_nm is not None:
            factors[std] = float(scale_nm)
            continue
        unit = units.get(std)
        if unit in (None, "") or unit in NM_PER:
            factors[std] = NM_PER.get(unit, 1.0)
        elif unit in ("px", "pixel", "pixels"):
            if not pixel_size_nm:
                raise InputError(path, f"{std[:-3]} is in camera pixels; pass --camera-pixel NM")
            factors[std] = float(pixel_size_nm)
        else:
            factors[std] = 1.0
    return factors


def read_decode_csv(path, pixel_size_nm=None, **_) -> LocalizationTable:
    """DECODE CSV: comment lines (``#``) with metadata, then ``x,y,z,phot,frame_ix,...``."""
    text = head_text(path, 16384)
    comments = []
    for line in text.split("\n"):
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("#").strip())
    meta = _decode_meta(" ".join(comments))
    raw = read_table(path, comment_lines=len(comments))
    mapping = {"x_nm": "x", "y_nm": "y", "z_nm": "z", "frame": "frame_ix", "photons": "phot"}
    mapping = {k: v for k, v in mapping.items() if v in raw.columns}
    factors = {}
    unit = str(meta.get("xy_unit", "nm"))
    if unit == "px":
        px = meta.get("px_size") or pixel_size_nm
        if not px:
            raise InputError(
                path, "DECODE positions in pixels and no px_size; pass --camera-pixel NM"
            )
        px = list(px) if isinstance(px, list | tuple) else [px, px]
        factors = {"x_nm": float(px[0]), "y_nm": float(px[1])}
    if {"x_sig", "y_sig"} <= set(raw.columns):
        sx = raw["x_sig"] * factors.get("x_nm", 1.0)
        sy = raw["y_sig"] * factors.get("y_nm", 1.0)
        raw["precision_nm"] = (sx + sy) / 2
        mapping["precision_nm"] = "precision_nm"
    return normalise(raw, mapping, path=path, fmt="decode-csv", factors=factors, metadata=meta)


def _decode_meta(text: str) -> dict:
    """``px_size`` (1 or 2 numbers, also inside ``tensor([...])``) and ``xy_unit`` from comments."""
    meta = {}
    m = re.search(r"xy_unit['\"]?\s*[:=]\s*['\"]?(\w+)", text)
    if m:
        meta["xy_unit"] = m.group(1)
    k = text.find("px_size")
    if k >= 0:
        seg = re.split(r"['\"]?[a-z_]{3,}['\"]?\s*[:=]", text[k + 7 : k + 120].lstrip("'\" :=("))[0]
        nums = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", seg)[:2]
        if nums:
            meta["px_size"] = [float(v) for v in nums]
    return meta


__all__ = [
    "ALIASES",
    "STANDARD",
    "guess_mapping",
    "read_csv_table",
    "read_decode_csv",
    "read_smlm_challenge",
    "read_vlume",
]
