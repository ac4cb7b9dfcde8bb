"""Nuclei in fluorescence nuclear stains (Hoechst / DAPI), 2D and per time point.

Method
------
1. Light Gaussian smoothing (a tenth of the nucleus diameter).
2. Foreground: Otsu's threshold on the smoothed image, *guarded* by the
   image's own background statistics: the threshold is never below
   ``background + min_snr * noise`` (background = median of the darker pixels,
   noise = their MAD), and when nothing stands out of the noise the result is
   empty. A field without nuclei therefore gives no objects instead of
   thresholded noise.
3. Holes filled, objects smaller than ``min_area_um2`` removed.
4. Touching nuclei split by a marker watershed on the distance transform;
   markers are distance maxima at least ``split_distance`` apart (a fraction
   of the nucleus diameter, estimated from the mask when not given).

All sizes are in micrometres when ``pixel_size_um`` is given, otherwise in pixels.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.params import Param, validate
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.segment._checks import check_gray, check_pixel_size
from napari_nucleus_ai.segment._morph import drop_small, fill_small_holes, relabel

DEFAULTS = {
    "diameter_um": None,  # typical nucleus diameter; None = estimate from the image
    "min_area_um2": None,  # None = (diameter / 4)**2 * pi ... see _sizes
    "min_snr": 5.0,  # nuclei must stand this many noise sigmas above the background
    "threshold": None,  # absolute intensity threshold; None = guarded Otsu
    "split": True,  # split touching nuclei
    "split_ratio": 0.4,  # markers at least split_ratio * diameter apart
}


# what each parameter may be (checked before any work; the dock's limits come from here)
SCHEMA = (
    Param(
        "diameter_um",
        float,
        0,
        10_000,
        low_open=True,
        optional=True,
        unit="um (px without a pixel size)",
        step=0.5,
    ),
    Param("min_area_um2", float, 0, 1e8, optional=True, unit="um^2"),
    Param("min_snr", float, 0, 1000, low_open=True, step=0.5),
    Param("threshold", float, optional=True),
    Param("split", bool),
    Param("split_ratio", float, 0, 2, low_open=True),
)


def background_stats(image: np.ndarray) -> tuple[float, float]:
    """Background level and noise sigma, from the darkest pixels.

    For a Gaussian background, its -2 and -1 sigma points are the 2.3rd and 15.9th
    percentiles of the image as long as the background covers about a third of
    the field, whatever the objects do: sigma = P15.9 - P2.3, level = P15.9 + sigma.
    """
    flat = image.ravel()
    if flat.size > 400_000:  # subsample big images: statistics only
        flat = flat[:: flat.size // 200_000]
    p2, p16, p50 = np.percentile(flat, [2.275, 15.866, 50.0])
    sigma = float(p16 - p2)
    if sigma <= 0:  # quantised or clipped background: fall back to a spread estimate
        sigma = float(np.std(flat[flat <= p50])) or 1e-6
    return float(p16) + sigma, sigma


def foreground(smoothed: np.ndarray, min_snr: float, threshold: float | None) -> np.ndarray:
    """Guarded-Otsu (or absolute) foreground mask of a smoothed fluorescence image."""
    from skimage.filters import threshold_otsu

    if threshold is not None:
        return smoothed > float(threshold)
    bg, noise = background_stats(smoothed)
    floor = bg + float(min_snr) * noise
    if float(smoothed.max()) <= floor:
        return np.zeros(smoothed.shape, bool)
    try:
        t = float(threshold_otsu(smoothed))
    except ValueError:
        return np.zeros(smoothed.shape, bool)
    # Otsu on a few bright blobs in a big dark field lands too low or too high;
    # the floor keeps it out of the noise, and the mean of the object must stand out too.
    t = max(t, floor)
    mask = smoothed > t
    if not mask.any() or float(smoothed[mask].mean()) < bg + float(min_snr) * noise:
        return np.zeros(smoothed.shape, bool)
    return mask


def _estimate_diameter(mask: np.ndarray) -> float | None:
    """Typical object diameter (px) from a mask: median equivalent diameter of its parts."""
    from skimage.measure import label, regionprops_table

    lab = label(mask)
    if lab.max() == 0:
        return None
    areas = regionprops_table(lab, properties=["area"])["area"]
    areas = areas[areas >= 9]
    if areas.size == 0:
        return None
    # touching nuclei make clumps larger than single nuclei; the lower-middle of the
    # distribution is the single-nucleus size
    typical = float(np.percentile(areas, 40))
    return 2.0 * np.sqrt(typical / np.pi)


def split_touching(mask: np.ndarray, diameter_px: float, split_ratio: float) -> np.ndarray:
    """Label ``mask``, splitting touching round objects by a distance-transform watershed."""
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.segmentation import watershed

    comps = label(mask)
    if comps.max() == 0:
        return comps.astype(np.int32)
    dist = ndi.distance_transform_edt(mask)
    dist = ndi.gaussian_filter(dist, sigma=max(0.5, diameter_px / 20.0)) * mask
    # markers: distance maxima at least split_ratio * diameter apart (peak_local_max), plus
    # maxima with a real dynamic (h-maxima) so a small nucleus pressed against a big one
    # keeps its own marker; markers closer than that distance are then merged.
    from skimage.feature import peak_local_max
    from skimage.morphology import h_maxima

    min_dist = max(2.0, split_ratio * diameter_px)
    peaks = peak_local_max(
        dist, min_distance=int(round(min_dist)), threshold_abs=max(1.0, 0.15 * diameter_px / 2.0),
        labels=comps, exclude_border=False,
    )  # fmt: skip
    seeds = np.zeros(mask.shape, bool)
    seeds[tuple(peaks.T)] = True
    # h-maxima is slow: only on clumps (components clearly larger than one nucleus)
    h = max(0.5, split_ratio * 0.25 * diameter_px / 2.0)
    single = np.pi * (diameter_px / 2.0) ** 2
    areas = np.bincount(comps.ravel())
    for i, sl in enumerate(ndi.find_objects(comps), start=1):
        if sl is None or areas[i] < 1.3 * single:
            continue
        own = comps[sl] == i
        seeds[sl] |= (h_maxima(np.where(own, dist[sl], 0.0), h) > 0) & own
    markers, n_markers = ndi.label(seeds, structure=np.ones((3, 3), bool))
    markers = _merge_close_markers(markers, n_markers, min_dist, ndi)
    # every component gets at least one marker (tiny or odd-shaped ones may have no peak)
    have = np.unique(comps[markers > 0])
    missing = np.setdiff1d(np.arange(1, comps.max() + 1), have)
    if missing.size:
        centres = ndi.maximum_position(dist, comps, missing)
        start = int(markers.max()) + 1
        for i, c in enumerate(centres):
            markers[c] = start + i
    out = watershed(-dist, markers, mask=mask)
    return out.astype(np.int32)


def _merge_close_markers(markers, n, min_dist, ndi):
    """Give markers whose centres are closer than ``min_dist`` the same id."""
    if n < 2:
        return markers
    c = np.asarray(ndi.center_of_mass(markers > 0, markers, np.arange(1, n + 1))).reshape(-1, 2)
    parent = np.arange(n + 1)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    from scipy.spatial import cKDTree

    for i, j in cKDTree(c).query_pairs(min_dist):
        parent[find(i + 1)] = find(j + 1)
    lut = np.array([find(i) for i in range(n + 1)])
    return lut[markers].astype(np.int32)


def _sizes(diameter_um, min_area_um2, pixel_size_um, mask_for_estimate):
    """Diameter and minimum area in pixels."""
    if diameter_um is not None:
        if not np.isfinite(diameter_um) or diameter_um <= 0:
            raise InputError(None, f"diameter must be positive, got {diameter_um!r}")
        d_px = float(diameter_um) / (pixel_size_um or 1.0)
    else:
        d_px = _estimate_diameter(mask_for_estimate) or 10.0
    if min_area_um2 is not None:
        a_px = float(min_area_um2) / (pixel_size_um or 1.0) ** 2
    else:
        a_px = np.pi * (d_px / 4.0) ** 2  # a quarter of the diameter across
    return d_px, max(4.0, a_px)


def segment_nuclei(image2d, pixel_size_um: float | None = None, **params) -> np.ndarray:
    """Segment nuclei in one 2D fluorescence image.

    Parameters
    ----------
    image2d : (Y, X) array
        Nuclear stain (Hoechst / DAPI), any numeric dtype; bright nuclei on a dark background.
    pixel_size_um : float, optional
        Pixel size; sizes below are then in micrometres, else in pixels.
    diameter_um : float, optional
        Typical nucleus diameter; estimated from the image when not given.
    min_area_um2 : float, optional
        Smaller objects are dropped (default: a circle a quarter of the diameter across).
    min_snr : float
        Nuclei must stand this many noise sigmas above the background (default 5).
    threshold : float, optional
        Absolute intensity threshold instead of the guarded Otsu.
    split : bool
        Split touching nuclei (default True).
    split_ratio : float
        Split markers at least this fraction of the diameter apart (default 0.4).

    Returns
    -------
    (Y, X) int32 array
        0 = background, 1..N = nuclei.

    Raises
    ------
    InputError
        For empty, too small, non-2D, non-finite or absurd images, or unknown parameters.
    """
    from scipy import ndimage as ndi

    params = validate(SCHEMA, params, "nuclei", unknown="parameter", shown="{name}={value}")
    p = {**DEFAULTS, **params}
    img = check_gray(image2d, what="nuclear-stain image")
    px = check_pixel_size(pixel_size_um)
    if float(img.max()) == float(img.min()):
        raise InputError(
            None,
            f"nuclear-stain image is one single value ({float(img.max()):g}); nothing to segment",
        )
    # first pass with a small smoothing to estimate the size when it is not given
    d_guess = float(p["diameter_um"]) / (px or 1.0) if p["diameter_um"] else 20.0
    smoothed = ndi.gaussian_filter(img, sigma=max(0.7, d_guess / 20.0))
    mask = foreground(smoothed, p["min_snr"], p["threshold"])
    if not mask.any():
        return np.zeros(img.shape, np.int32)
    d_px, min_area_px = _sizes(p["diameter_um"], p["min_area_um2"], px, mask)
    if p["diameter_um"] is None and abs(d_px / 20.0 - 1.0) > 0.5:
        smoothed = ndi.gaussian_filter(img, sigma=max(0.7, d_px / 20.0))
        mask = foreground(smoothed, p["min_snr"], p["threshold"])
    mask = fill_small_holes(mask, np.pi * (d_px / 2.0) ** 2 / 4)
    mask = drop_small(mask, min_area_px)
    if not mask.any():
        return np.zeros(img.shape, np.int32)
    if p["split"]:
        labels = split_touching(mask, d_px, float(p["split_ratio"]))
    else:
        from skimage.measure import label

        labels = label(mask).astype(np.int32)
    # fragments created by the split that are far too small are dropped, then relabel 1..N
    counts = np.bincount(labels.ravel())
    small = np.nonzero(counts < min_area_px)[0]
    small = small[small > 0]
    if small.size:
        labels[np.isin(labels, small)] = 0
    return relabel(labels)


def segment_nuclei_stack(
    stack, pixel_size_um: float | None = None, cancel=None, **params
) -> Generator[Progress, None, np.ndarray]:
    """Segment every time point (or plane) of a (T, Y, X) stack; a core generator.

    Labels are independent per time point (linking over time is tracking's job).
    ``cancel`` is an optional callable returning True to stop (raises :class:`Cancelled`).

    Yields
    ------
    Progress
    Returns
    -------
    (T, Y, X) int32 labels
    """
    arr = np.asarray(stack) if not hasattr(stack, "compute") else stack
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(None, f"nuclear-stain stack must be (T, Y, X), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(None, "nuclear-stain stack has no time points")
    out = np.zeros(arr.shape, np.int32)
    n = arr.shape[0]
    for t in range(n):
        if cancel is not None and cancel():
            raise Cancelled("segmentation cancelled")
        yield Progress(t, n, f"time point {t + 1}/{n}")
        frame = np.asarray(arr[t])
        if frame.size and frame.min() == frame.max():
            continue  # a blank frame (shutter closed, dropped frame) has no nuclei
        out[t] = segment_nuclei(frame, pixel_size_um, **params)
    yield Progress(n, n, "done")
    return out
