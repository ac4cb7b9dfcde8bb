"""Core generators the Localizations dock runs in a worker (and the CLI can drive)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from napari_nucleus_ai.core.progress import Progress


@dataclass
class ProcessResult:
    """Filtered (and drift-corrected) table, its render, and the drift if estimated."""

    data: pd.DataFrame
    rendered: object
    drift: object = None
    n_before: int = 0
    params: dict = field(default_factory=dict)


def read_gen(path, **options):
    """Read a file: yields progress, returns the :class:`LocalizationTable`."""
    from napari_nucleus_ai.localizations import read_localizations

    yield Progress(0, 1, "reading")
    table = read_localizations(path, **options)
    yield Progress(1, 1, f"{len(table)} localizations")
    return table


def process_gen(
    df: pd.DataFrame,
    pixel_size_nm: float = 10.0,
    method: str = "gaussian",
    sigma_nm: float | None = None,
    z_mode: str = "project",
    precision_max_nm: float | None = None,
    photons_min: float | None = None,
    frame_range: tuple | None = None,
    roi=None,
    roi_types=None,
    drift_segments: int = 0,
):
    """Filter, optionally correct drift, render. Yields progress; returns :class:`ProcessResult`."""
    from napari_nucleus_ai.localizations.drift import drift_correct_gen
    from napari_nucleus_ai.localizations.filters import filter_localizations
    from napari_nucleus_ai.localizations.render import render_localizations

    yield Progress(0, 3, "filtering")
    out = filter_localizations(df, precision_max_nm, photons_min, frame_range, None, roi, roi_types)
    drift = None
    if drift_segments:
        drift = yield from drift_correct_gen(out, segments=int(drift_segments))
        out = drift.data
    yield Progress(2, 3, "rendering")
    r = render_localizations(
        out, pixel_size_nm=pixel_size_nm, method=method, sigma_nm=sigma_nm, z_mode=z_mode
    )
    yield Progress(3, 3, "done")
    params = dict(
        pixel_size_nm=pixel_size_nm,
        method=method,
        sigma_nm=r.sigma_nm,
        z_mode=z_mode,
        precision_max_nm=precision_max_nm,
        photons_min=photons_min,
        frame_range=frame_range,
        drift_segments=drift_segments,
    )
    return ProcessResult(out, r, drift, len(df), params)


def zoom_gen(
    df: pd.DataFrame, view_min_nm, view_max_nm, canvas_px: int, base_pixel_nm: float, **kw
):
    """Re-render the visible region at screen-matched pixels (None when not needed)."""
    from napari_nucleus_ai.localizations.render import render_view

    yield Progress(0, 1, "zoom render")
    return render_view(df, view_min_nm, view_max_nm, canvas_px, base_pixel_nm, **kw)
