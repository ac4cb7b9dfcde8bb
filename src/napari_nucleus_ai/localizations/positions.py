"""The rules every localization table keeps on its positions, on plain numpy arrays.

One home for: which rows count (every position finite), the z column of a 2D export
(all zeros: no z), the 1 m bound on coordinates and the bounds ``info`` prints. The
normalised table (:func:`.table.normalise`) applies them to its columns; ``info``
applies them to the position columns alone (:func:`summarise`), without a table and
without pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.params import MAX_COORD_NM

POSITION = ("x_nm", "y_nm", "z_nm")
STANDARD = ("x_nm", "y_nm", "z_nm", "frame", "photons", "precision_nm", "channel")


def all_zero(values: np.ndarray) -> bool:
    """True when every finite value is 0 (a z column of a 2D export)."""
    v = np.asarray(values)
    return bool(np.all(v[np.isfinite(v)] == 0))


def finite_rows(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Boolean mask of the rows whose positions are all finite (the rows a table keeps)."""
    keep = np.ones(n, bool)
    for v in columns:
        keep &= np.isfinite(v)
    return keep


def beyond_range(low: float, high: float) -> bool:
    """True when a position column spanning ``[low, high]`` reaches beyond 1 m."""
    return max(high, -low) > MAX_COORD_NM


def range_problem(name: str, values: np.ndarray) -> str | None:
    """Why ``values`` (one position column, kept rows) are not nm positions, or None."""
    v = np.asarray(values)
    if not v.size or not beyond_range(float(v.min()), float(v.max())):
        return None
    worst = float(v[np.argmax(np.abs(v))])
    return (
        f"{name} reaches {worst:.3g} nm, beyond 1 m: not localizations in nm (wrong column "
        "or unit? see --columns / --camera-pixel)"
    )


def bounds_of(columns: dict) -> dict:
    """``{"x": [min, max], "y": [...], ("z")}`` (floats) of ``{"x_nm": array, ...}``."""
    out = {}
    for axis in ("x", "y", "z"):
        v = columns.get(f"{axis}_nm")
        if v is not None and len(v):
            out[axis] = [float(np.min(v)), float(np.max(v))]
    return out


@dataclass
class PositionSummary:
    """What ``info`` prints about a table's positions: rows kept, rows dropped, bounds.

    Answers the questions ``info`` asks of a :class:`.table.LocalizationTable`
    (``len``, ``format``, ``n_dropped``, ``metadata``, ``bounds_nm()``).
    """

    format: str
    count: int
    n_dropped: int
    bounds: dict
    is_3d: bool
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.count

    def bounds_nm(self) -> dict:
        return self.bounds


def summarise(raw: dict, factors: dict, fmt: str) -> PositionSummary | None:
    """The :class:`PositionSummary` of position columns as a reader read them.

    Parameters
    ----------
    raw : dict
        ``{"x_nm": array, "y_nm": array, ("z_nm": array)}`` as the file holds them.
    factors : dict
        ``{name: multiplier}`` to nm, as for :func:`.table.normalise`.
    fmt : str
        The format name.

    Returns
    -------
    PositionSummary or None
        None when the table itself must decide (a column that is not numeric, no row
        kept, a position beyond 1 m): :func:`.table.normalise` then says what is wrong.
    """
    cols = {}
    for name in POSITION:
        if name not in raw:
            continue
        v = np.asarray(raw[name])
        if v.dtype.kind not in "fiu":
            return None
        factor = factors.get(name)
        if factor is not None and float(factor) != 1.0:
            v = v * float(factor)
        cols[name] = v.astype(np.float64, copy=False)
    if "x_nm" not in cols or "y_nm" not in cols:
        return None
    if "z_nm" in cols and all_zero(cols["z_nm"]):
        del cols["z_nm"]
    n = len(cols["x_nm"])
    keep = finite_rows(list(cols.values()), n)
    kept = int(keep.sum())
    if kept == 0:
        return None
    if kept < n:
        cols = {k: v[keep] for k, v in cols.items()}
    bounds = bounds_of(cols)
    if any(beyond_range(*b) for b in bounds.values()):
        return None
    return PositionSummary(fmt, kept, n - kept, bounds, "z_nm" in cols)
