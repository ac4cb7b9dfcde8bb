"""The canonical cell frame: the central white cell, centred, at a fixed size.

Crops of white cells come framed every which way: a CellaVision crop shows the cell at
about a third of the side among red cells, a box cut from a field shows the cell filling
it, and the magnification differs between microscopes. :func:`canonical_frame` removes
that before a model sees the crop:

1. :func:`find_cell` finds the central cell's nucleus (all lobes) on a reduced copy of
   the crop from the nuclear-stain signal (:func:`nuclear_signal`: optical density along
   the purple direction orthogonal to the crop's red-cell colour), thresholded relative
   to the crop's own densest central nucleus, so pale and dark stains both work;
2. the cell diameter is the equivalent diameter of the convex hull of the nuclear parts
   divided by :data:`NUC_TO_CELL` (no pixel size needed); a caller that knows the pixel
   size gives the diameter in pixels instead (``cell_px``), or one that uses the red
   cells as the ruler (:func:`red_cell_diameter`: a red cell is about 7.5 um on every
   microscope);
3. the crop is cut around the nucleus centre and resampled so that this diameter is
   ``fill`` of the ``size``-pixel output; whatever of the frame lies outside the crop is
   the crop's own plasma colour, the crop's border fading into it over 0.15 cell
   diameter (a tightly cut cell gets a plausible background, not a hard edge).

:mod:`napari_nucleus_ai.models.framing` decides when a frame is used (the card's
``input.frame``) and with which numbers. numpy, scipy, scikit-image and torch only.
"""

from __future__ import annotations

import numpy as np

NUC_TO_CELL = 0.75  # convex-hull diameter of the nucleus / cell diameter (typical white cell)
WORK = 160  # side of the reduced copy the cell is found on
RBC = np.array([0.40, 0.76, 0.51])  # optical-density direction of red cells (prior)
PURPLE = np.array([0.55, 0.82, 0.15])  # optical-density direction of nuclear stain (prior)
WHITE_MASK = 0.75  # radius left out around the white cell, in its measured diameters
RBC_MIN = 0.25  # smallest red-cell diameter counted, in the white cell's measured diameters


def _reduce(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``rgb`` resized (antialiased) so its shorter side is ``side``; returns (img, factor)."""
    from skimage.transform import resize

    f = side / min(rgb.shape[:2])
    if abs(f - 1) < 1e-3:
        return rgb, 1.0
    shape = (max(8, round(rgb.shape[0] * f)), max(8, round(rgb.shape[1] * f)), 3)
    small = resize(rgb, shape, order=1, anti_aliasing=f < 1, preserve_range=True)
    return small.astype(np.float32), f


def plasma_colour(rgb: np.ndarray) -> np.ndarray:
    """Background (plasma / glass) RGB colour: median of the brightest 10 % of pixels."""
    lum = rgb.mean(-1)
    sel = lum >= np.percentile(lum, 90)
    return np.median(rgb[sel], axis=0).astype(np.float32)


def nuclear_signal(rgb: np.ndarray, plasma: np.ndarray | None = None) -> np.ndarray:
    """Nuclear-stain optical density of an RGB crop in [0, 1] against its own plasma colour
    (``plasma``: :func:`plasma_colour` of ``rgb`` when already known).

    The red-cell direction is the median OD direction of stained pixels when it is close
    to the red-cell prior :data:`RBC`, else the prior (a crop filled by the white cell).
    """
    bg = np.maximum(plasma_colour(rgb) if plasma is None else plasma, 1e-2)
    od = np.maximum(-np.log10(np.clip(rgb, 1e-3, 1) / bg), 0)
    tot = od.sum(-1)
    r = RBC
    st = tot > 0.08
    if st.sum() > 50:
        c = np.median(od[st], axis=0)
        if np.linalg.norm(c) > 0:
            c = c / np.linalg.norm(c)
            if c @ RBC > c @ PURPLE and c @ RBC > 0.95:
                r = c
    d = PURPLE - (PURPLE @ r) * r
    return od @ (d / np.linalg.norm(d))


def _nucleus_parts(nuc: np.ndarray) -> np.ndarray:
    """Mask of the central nucleus (lobes grouped) on a nuclear-signal image."""
    from scipy import ndimage as ndi

    h, w = nuc.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / min(h, w)
    s = ndi.gaussian_filter(nuc, 1.0)
    peak = np.percentile(s[r < 0.25], 99.5)
    base = np.median(s)
    thr = max(base + 0.45 * (peak - base), 0.03)
    lab, n = ndi.label(ndi.binary_opening(s > thr))
    if n == 0:
        return r <= 0.05
    idx = np.arange(1, n + 1)
    area = np.asarray(ndi.sum(np.ones_like(s), lab, idx)) / (h * w)
    rmin = np.asarray(ndi.minimum(r, lab, idx))
    keep = lab == idx[int(np.argmax(area / (1 + (rmin / 0.12) ** 2)))]  # big, near the centre
    for _ in range(4):  # lobes: parts within ~1/3 nucleus diameter of those found so far
        dia = 2 * np.sqrt(keep.sum() / np.pi)
        near = np.asarray(ndi.minimum(ndi.distance_transform_edt(~keep), lab, idx))
        grown = keep | np.isin(lab, idx[near < max(2.0, 0.35 * dia)])
        if grown.sum() == keep.sum():
            break
        keep = grown
    return keep


def red_cell_diameter(
    small: np.ndarray, centre, diameter: float, plasma: np.ndarray | None = None
) -> float | None:
    """Median red-cell diameter of a reduced crop in its pixels, or ``None`` (no red cell).

    The stained foreground (total optical density against the plasma, holes such as the
    red cells' central pallor filled) without the white cell (a disc of radius
    :data:`WHITE_MASK` ``diameter`` around ``centre``: the measured diameter comes from the
    nucleus, and a granular cytoplasm reaches beyond it) and without nuclear stain falls
    into parts; each part's largest
    inscribed disc (distance transform) is one red cell's (touching red cells are parted
    by their waist). Parts whose disc touches the crop's edge (cut cells), or narrower
    than :data:`RBC_MIN` of the white cell's ``diameter``, are not counted. A crop the white cell
    fills (a tight box) has none: the caller then keeps the cell's own scale. ``plasma``:
    :func:`plasma_colour` of ``small`` when already known.
    """
    from scipy import ndimage as ndi

    plasma = plasma_colour(small) if plasma is None else plasma
    bg = np.maximum(plasma, 1e-2)
    tot = np.maximum(-np.log10(np.clip(small, 1e-3, 1) / bg), 0).sum(-1)
    h, w = tot.shape
    yy, xx = np.mgrid[:h, :w]
    white = np.hypot(yy - centre[0], xx - centre[1]) < WHITE_MASK * diameter
    nuclear = ndi.gaussian_filter(nuclear_signal(small, plasma), 1.0) > 0.1
    fg = ndi.binary_fill_holes(ndi.binary_opening(tot > 0.06)) & ~white & ~nuclear
    dist = ndi.distance_transform_edt(np.pad(fg, 1))[1:-1, 1:-1]
    lab, n = ndi.label(fg)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    radius = np.asarray(ndi.maximum(dist, lab, idx), float)
    where = np.asarray(ndi.maximum_position(dist, lab, idx), float).reshape(-1, 2)
    edge = np.minimum(
        np.minimum(where[:, 0], h - 1 - where[:, 0]), np.minimum(where[:, 1], w - 1 - where[:, 1])
    )
    ok = (edge > radius + 1) & (radius >= RBC_MIN * diameter / 2)
    return float(2 * np.median(radius[ok])) if ok.any() else None


def find_cell(rgb: np.ndarray, work: int = WORK, red_cells: bool = True) -> dict:
    """Centre and size of the central white cell of a crop.

    Parameters
    ----------
    rgb : np.ndarray (H, W, 3)
        RGB crop in [0, 1]; the cell near the centre, any framing.
    work : int
        Side of the reduced copy the search runs on.
    red_cells : bool
        Measure the red cells (``red_cell``); False leaves the key out (a caller that does
        not use the red cells as its ruler).

    Returns
    -------
    dict
        ``centre`` (y, x) and ``diameter`` (the cell's, from the nucleus hull) in input
        pixels, ``nucleus_diameter`` (the hull's), ``red_cell`` (the median red-cell
        diameter in input pixels, :func:`red_cell_diameter`; ``None`` when the crop shows
        no whole red cell) and ``plasma`` (RGB).
    """
    from skimage.morphology import convex_hull_image

    small, f = _reduce(np.asarray(rgb, np.float32), work)
    plasma = plasma_colour(small)
    parts = _nucleus_parts(nuclear_signal(small, plasma))
    hull = convex_hull_image(parts) if parts.sum() >= 3 else parts
    ys, xs = np.nonzero(hull)
    dh = 2 * np.sqrt(hull.sum() / np.pi) / f
    centre = (float(ys.mean()), float(xs.mean()))
    out = {
        "centre": (centre[0] / f, centre[1] / f),
        "nucleus_diameter": float(dh),
        "diameter": float(dh / NUC_TO_CELL),
    }
    if red_cells:
        rbc = red_cell_diameter(small, centre, dh * f / NUC_TO_CELL, plasma)
        out["red_cell"] = None if rbc is None else rbc / f
    out["plasma"] = plasma.copy()
    return out


def resample(rgb: np.ndarray, centre, window: float, size: int, fill_rgb, edge_px: float = 1.0):
    """``window`` x ``window`` input pixels around ``centre`` resampled to ``size``.

    Outside the crop is ``fill_rgb``; the crop's own border fades into it over ``edge_px``
    input pixels (no hard square edge when a tight crop is padded).
    """
    import torch
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    border = np.minimum(np.minimum(yy + 0.5, h - 0.5 - yy), np.minimum(xx + 0.5, w - 0.5 - xx))
    alpha = np.clip(border / max(edge_px, 1.0), 0, 1).astype(np.float32)[..., None]
    fill_rgb = np.asarray(fill_rgb, np.float32)
    rgb = alpha * rgb + (1 - alpha) * fill_rgb
    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float()
    cy, cx = centre
    factor = window / size
    if factor > 1.5:  # antialias: area-average first
        k = int(factor)
        t = F.avg_pool2d(t, k, stride=k, ceil_mode=True)
        cy, cx, window = cy / k, cx / k, window / k
        h, w = t.shape[-2:]
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gy = (cy + lin[:, None] * window + 0.5) / h * 2 - 1
    gx = (cx + lin[None, :] * window + 0.5) / w * 2 - 1
    gy, gx = np.broadcast_arrays(gy, gx)
    grid = torch.from_numpy(np.stack([gx, gy], -1).astype(np.float32))[None]
    bg = torch.from_numpy(fill_rgb)[None, :, None, None]
    out = F.grid_sample(t - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out + bg)[0].numpy().transpose(1, 2, 0)


def trim_padding(img: np.ndarray, level: float = 0.02) -> np.ndarray:
    """``img`` without the black rows and columns at its edges (a crop box that ran past
    the image, padded with zeros): no pixel of them above ``level`` of the dtype's range."""
    from napari_nucleus_ai.models.crops import to_float

    x = np.asarray(img)
    if x.ndim != 3 or min(x.shape[:2]) < 3:
        return x
    bright = np.asarray(to_float(x)[..., :3]).max(-1) > level
    rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    if len(rows) < 3 or len(cols) < 3:
        return x
    return x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def canonical_frame(
    rgb: np.ndarray,
    size: int,
    fill: float = 0.5,
    cell_px: float | None = None,
    found: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """The central white cell at a fixed size, centred, on its own plasma colour.

    Parameters
    ----------
    rgb : np.ndarray (H, W, 3)
        RGB crop in [0, 1] (integer images are scaled by their dtype), any framing.
    size : int
        Output side in pixels.
    fill : float
        Cell diameter as a fraction of ``size``.
    cell_px : float, optional
        The cell diameter in input pixels when the pixel size is known (a physical
        scale); measured by :func:`find_cell` when omitted.
    found : dict, optional
        :func:`find_cell` of this crop, when already known.

    Returns
    -------
    frame : np.ndarray (size, size, 3) float32 in [0, 1]
    info : dict
        :func:`find_cell`'s, plus ``window`` (the frame's side in input pixels) and
        ``scale`` (``"cell"`` measured or ``"physical"``).
    """
    from napari_nucleus_ai.models.crops import to_float

    rgb = np.asarray(to_float(rgb)[..., :3], np.float32)
    info = dict(found) if found is not None else find_cell(rgb)
    d = float(cell_px) if cell_px else info["diameter"]
    window = d / fill
    out = resample(rgb, info["centre"], window, size, info["plasma"], edge_px=0.15 * d)
    info.update(window=float(window), scale="physical" if cell_px else "cell")
    return np.clip(out, 0, 1).astype(np.float32), info
