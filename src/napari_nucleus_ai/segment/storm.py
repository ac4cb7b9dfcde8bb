"""Nuclei from STORM / SMLM localization density.

Localizations are rendered into a coarse density image (``pixel_size_nm``,
default 100 nm, blurred by ``smooth_nm``) with the localization renderer, so the
image sits in true nanometres (``scale``/``translate`` as in napari). The
density is segmented like a nuclear stain (:func:`.nuclei.segment_nuclei`:
guarded threshold that stays empty on pure background, holes filled, touching
nuclei split); holes as large as a nucleus are filled too, because
chromatin-poor centres (e.g. virus replication compartments) are still nucleus.

Every localization is then given the label of the pixel it falls in, which
yields, per nucleus, the subset of its localizations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.params import Param, validate

DEFAULTS = {
    "smooth_nm": 300.0,  # density blur; chromatin texture below this scale is ignored
    "diameter_nm": None,  # typical nucleus diameter; None = estimated
    "min_area_um2": 10.0,  # smaller dense spots are not nuclei
    "min_snr": 5.0,
    "threshold": None,  # localizations per pixel, after blur; None = guarded Otsu
    "split": True,
    "edge_fraction": 0.35,  # the envelope: density falls below this share of the nucleus's
}

# what each parameter may be (checked before any work; the dock's limits come from here)
SCHEMA = (
    Param("smooth_nm", float, 0, 100_000, low_open=True, unit="nm", step=50),
    Param("diameter_nm", float, 0, 1e7, low_open=True, optional=True, unit="nm"),
    Param("min_area_um2", float, 0, 1e8, unit="um^2", step=1),
    Param("min_snr", float, 0, 1000, low_open=True),
    Param("threshold", float, 0, optional=True, unit="localizations per pixel"),
    Param("split", bool),
    Param("edge_fraction", float, 0, 1, low_open=True, high_open=True),
)


@dataclass
class StormNuclei:
    """Result of :func:`segment_storm_nuclei`.

    Attributes
    ----------
    labels : (Y, X) int32
        0 = background; geometry in nm via ``scale`` / ``translate`` (napari).
    scale, translate : tuple of float
        Pixel size and centre of pixel (0, 0), nm, (y, x).
    density : (Y, X) float32
        The rendered density image that was segmented.
    localizations : DataFrame
        The input rows with a ``nucleus`` column (0 = outside every nucleus).
    """

    labels: np.ndarray
    scale: tuple
    translate: tuple
    density: np.ndarray
    localizations: pd.DataFrame
    pixel_size_nm: float
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.max())

    def subset(self, label: int) -> pd.DataFrame:
        """The localizations of nucleus ``label``."""
        return self.localizations[self.localizations["nucleus"] == int(label)]

    def subsets(self) -> dict[int, pd.DataFrame]:
        """``{label: localizations}`` for every nucleus."""
        loc = self.localizations
        return {int(k): g for k, g in loc[loc["nucleus"] > 0].groupby("nucleus", sort=True)}

    def table(self, nanostructure: bool = False) -> pd.DataFrame:
        """The cell table (nm) with ``n_localizations`` per nucleus.

        ``nanostructure=True`` adds the ``nano_*`` chromatin features of
        :func:`napari_nucleus_ai.localizations.analysis.add_nanostructure`.
        """
        from napari_nucleus_ai.cells import measure_cells

        df = measure_cells(
            self.labels, self.density, scale=self.scale, translate=self.translate, unit="nm"
        )
        counts = self.localizations["nucleus"].value_counts()
        df["n_localizations"] = [int(counts.get(int(k), 0)) for k in df["label"]]
        if nanostructure:
            from napari_nucleus_ai.localizations.analysis import add_nanostructure

            df = add_nanostructure(df, self.localizations)
        return df


def _frame(df) -> pd.DataFrame:
    from napari_nucleus_ai.localizations.analysis._common import frame_of

    df = frame_of(df)  # a table with x_nm and y_nm, one-line errors otherwise
    if len(df) == 0:
        raise InputError(None, "no localizations to segment")
    xy = df[["x_nm", "y_nm"]].to_numpy(dtype=float)
    if not np.isfinite(xy).all():
        raise InputError(None, "localizations contain NaN or infinite positions")
    return df


def envelope_threshold(density: np.ndarray, min_snr: float, edge_fraction: float):
    """Density threshold at the nuclear envelope, or None when no nucleus stands out.

    Chromatin density inside a nucleus varies (dense heterochromatin domains, sparse
    euchromatin), so a threshold between background and the *average* nucleus cuts
    euchromatin at the edge. The envelope is where the density falls to
    ``edge_fraction`` of the nuclei's median density (never into the background noise).
    """
    from scipy import ndimage as ndi

    from napari_nucleus_ai.segment.nuclei import background_stats, foreground

    core = foreground(density, min_snr, None)
    if not core.any():
        return None
    bg, noise = background_stats(density)
    inside = float(np.median(density[ndi.binary_erosion(core, iterations=2) | core]))
    return max(bg + float(min_snr) * noise, edge_fraction * inside)


def segment_storm_nuclei(
    df, pixel_size_nm: float = 100.0, *, channel: str | None = None, **params
) -> StormNuclei:
    """Segment nuclei from localization density.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
        ``x_nm``, ``y_nm`` (the normalised table of ``io.localizations``).
    pixel_size_nm : float
        Pixel of the density image (default 100 nm; nuclei are ~10 um).
    channel : str, optional
        Use only this channel's localizations for the density (all rows get a label).
    smooth_nm : float
        Gaussian blur of the density (default 300 nm).
    diameter_nm : float, optional
        Typical nucleus diameter (estimated when not given).
    min_area_um2 : float
        Smallest nucleus (default 10 um^2).
    min_snr, threshold, split
        As in :func:`.nuclei.segment_nuclei` (threshold in localizations per pixel).

    Returns
    -------
    StormNuclei
    """
    from napari_nucleus_ai.localizations.render import render_localizations
    from napari_nucleus_ai.segment.nuclei import segment_nuclei

    params = validate(SCHEMA, params, "storm-nuclei", unknown="parameter", shown="{name}={value}")
    p = {**DEFAULTS, **params}
    px = float(pixel_size_nm)
    if not np.isfinite(px) or px <= 0:
        raise InputError(None, f"pixel size must be positive, got {pixel_size_nm!r}")
    loc = _frame(df)
    use = loc
    if channel is not None and "channel" in loc.columns:
        use = loc[loc["channel"].astype(str) == str(channel)]
        if len(use) == 0:
            raise InputError(None, f"no localizations in channel {channel!r}")
    x, y = loc["x_nm"].to_numpy(float), loc["y_nm"].to_numpy(float)
    bounds = {"x": [float(x.min()), float(x.max())], "y": [float(y.min()), float(y.max())]}
    span = max(bounds["x"][1] - bounds["x"][0], bounds["y"][1] - bounds["y"][0])
    if span < 8 * px:
        raise InputError(None, f"localizations span {span:.0f} nm: too small for {px:g} nm pixels")
    # pad by a few pixels so nuclei at the edge of the data are closed shapes
    pad = 4 * px
    bounds = {k: [v[0] - pad, v[1] + pad] for k, v in bounds.items()}
    r = render_localizations(
        use[["x_nm", "y_nm"]],
        pixel_size_nm=px,
        method="gaussian",
        sigma_nm=float(p["smooth_nm"]),
        bounds_nm=bounds,
    )
    density = np.asarray(r.image, np.float32)
    um = px / 1000.0
    kw = {
        "min_area_um2": p["min_area_um2"],
        "min_snr": p["min_snr"],
        "threshold": p["threshold"],
        "split": p["split"],
    }
    if p["diameter_nm"] is not None:
        kw["diameter_um"] = float(p["diameter_nm"]) / 1000.0
    if kw["threshold"] is None:
        kw["threshold"] = envelope_threshold(density, p["min_snr"], p["edge_fraction"])
        if kw["threshold"] is None:  # nothing stands out of the background
            kw["threshold"] = float(density.max()) + 1.0
    # foreground without splitting; close gaps of ~1 um and fill the chromatin-poor centres
    # (marginated chromatin makes rings), then split touching nuclei on the filled shapes
    kw["split"] = False
    mask = segment_nuclei(density, pixel_size_um=um, **kw) > 0
    labels = np.zeros(mask.shape, np.int32)
    if mask.any():
        from scipy import ndimage as ndi

        from napari_nucleus_ai.segment.nuclei import _estimate_diameter, split_touching

        r_close = max(1, int(round(1000.0 / px)))
        yy, xx = np.mgrid[-r_close : r_close + 1, -r_close : r_close + 1]
        disk = yy * yy + xx * xx <= r_close * r_close
        closed = ndi.binary_closing(np.pad(mask, r_close), structure=disk)[
            r_close:-r_close, r_close:-r_close
        ]
        mask = ndi.binary_fill_holes(closed | mask)
        if p["diameter_nm"] is not None:
            d_px = float(p["diameter_nm"]) / px
        else:
            d_px = _estimate_diameter(mask) or 10_000.0 / px
        if p["split"]:
            labels = split_touching(mask, d_px, 0.4)
        else:
            labels = ndi.label(mask)[0].astype(np.int32)
        from napari_nucleus_ai.segment._morph import relabel

        counts = np.bincount(labels.ravel())
        small = counts < float(p["min_area_um2"]) / (um * um)
        small[0] = False
        labels[small[labels]] = 0
        labels = relabel(labels)
    # every localization -> the label of its pixel
    col = np.floor((x - (r.translate[1] - px / 2)) / px).astype(np.int64)
    row = np.floor((y - (r.translate[0] - px / 2)) / px).astype(np.int64)
    inside = (row >= 0) & (row < labels.shape[0]) & (col >= 0) & (col < labels.shape[1])
    lab = np.zeros(len(loc), np.int32)
    lab[inside] = labels[row[inside], col[inside]]
    out = loc.copy()
    out["nucleus"] = lab
    return StormNuclei(
        labels=labels,
        scale=tuple(float(s) for s in r.scale),
        translate=tuple(float(t) for t in r.translate),
        density=density,
        localizations=out,
        pixel_size_nm=px,
        info={"smooth_nm": float(p["smooth_nm"]), "n_localizations": len(loc)},
    )
