"""White cells in Giemsa / Wright / May-Grunwald stained blood smears.

Every white cell becomes ONE object (a multi-lobed neutrophil nucleus is one
cell), including the cytoplasm around its nucleus; red cells, platelets and
stain debris are not objects. Nothing here is a per-image Otsu threshold:

1. **Optical density against the image's own background.** The plasma / glass
   colour is the median of the brightest pixels; every pixel becomes an
   absorbance vector ``OD = -log10(I / I_background)`` per channel. That
   removes the lamp colour, white balance and exposure.
2. **Red cells as the reference colour.** The median OD direction of the
   stained pixels is the red-cell (haemoglobin + eosin) colour of *this*
   image. The nuclear stain (azure / methylene blue) absorbs red and green
   light but little blue, so the *nuclear signal* is the part of the OD along
   the purple direction that is orthogonal to the red-cell colour: red cells
   give ~0 whatever their density, nuclei 0.15-0.5 OD. The thresholds on it
   are absorbances (stain physics), identical for every image, so a field
   without white cells yields nothing.
3. **Scale from the red cells.** Unless the pixel size is given, it is
   estimated from the red cells' size (7.5 um across), so sizes work at any
   magnification. Work happens at a reduced resolution (red cell ~24 px).
4. **One object per cell.** Nuclear parts closer than ``lobe_gap_um`` are one
   cell; cells whose nuclear area is below ``min_nucleus_um`` (platelets,
   debris) are dropped; each nucleus then grows into the cytoplasm around it
   (lilac / blue, or an eosinophil's dense orange granules), up to
   ``cytoplasm_um``, never into red cells or plasma.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.params import Param, validate
from napari_nucleus_ai.segment._checks import check_pixel_size, check_rgb
from napari_nucleus_ai.segment._morph import fill_small_holes, relabel

RBC_DIAMETER_UM = 7.5
# OD directions (R, G, B absorbance), unit length: stain-physics priors
RBC_PRIOR = np.array([0.40, 0.76, 0.51])
PURPLE_PRIOR = np.array([0.55, 0.82, 0.15])

DEFAULTS = {
    "nucleus_od": 0.085,  # nuclear signal (OD) a white-cell nucleus reaches
    "nucleus_low_od": 0.05,  # ... and the level its outline is traced at
    "min_nucleus_um": 3.9,  # equivalent diameter of the smallest white-cell nucleus (all lobes)
    "lobe_gap_um": 1.6,  # nuclear lobes closer than this belong to one cell
    "min_stain": 2.0,  # nuclear stain content (area x mean OD, um^2) of the smallest nucleus
    "cytoplasm_um": 3.0,  # how far cytoplasm may reach beyond the nucleus
    "cytoplasm_od": 0.025,  # nuclear signal of cytoplasm (lilac / blue) above the red cells'
    "granule_od": 0.015,  # eosinophilic-granule signal (orange, off the red-cell colour) of cytoplasm
    "stained_od": 0.08,  # total OD that separates cells from plasma
}
# what each parameter may be (checked before any work; the dock's limits come from here)
SCHEMA = (
    Param("nucleus_od", float, 0, 5, low_open=True, unit="OD", step=0.005),
    Param("nucleus_low_od", float, 0, 5, low_open=True, unit="OD"),
    Param("min_nucleus_um", float, 0, 100, low_open=True, unit="um", step=0.1),
    Param("lobe_gap_um", float, 0, 50, unit="um", step=0.1),
    Param("min_stain", float, 0, 1000, unit="um^2 OD"),
    Param("cytoplasm_um", float, 0, 50, unit="um", step=0.5),
    Param("cytoplasm_od", float, 0, 5, unit="OD"),
    Param("granule_od", float, 0, 5, unit="OD"),
    Param("stained_od", float, 0, 5, low_open=True, unit="OD"),
)
WORK_RBC_PX = 24.0  # red-cell diameter at the working resolution
DEFAULT_RBC_PX = 80.0  # when neither the pixel size nor red cells tell (0.094 um/px)


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (the rim that does not fill a block is dropped)."""
    if f <= 1:
        return img
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    if h == 0 or w == 0:
        return img
    acc = np.zeros((h // f, w // f) + img.shape[2:], np.float32)
    for i in range(f):  # f*f strided adds: much faster than a mean over reshaped axes
        for j in range(f):
            acc += img[i:h:f, j:w:f]
    return acc / np.float32(f * f)


def optical_density(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel absorbance against the image's own background; returns (od, background)."""
    eps = 1.0 / 512
    lum = rgb.mean(axis=-1)
    sample = lum[:: max(1, lum.shape[0] // 256), :: max(1, lum.shape[1] // 256)]
    bright = lum >= np.percentile(sample, 90)
    bg = np.median(rgb[bright], axis=0) if bright.any() else rgb.reshape(-1, 3).max(axis=0)
    bg = np.maximum(bg, 4 * eps)
    od = -np.log10(np.maximum(rgb, eps) / bg)
    return np.maximum(od, 0.0).astype(np.float32), bg


def stain_directions(od: np.ndarray, stained_od: float) -> tuple[np.ndarray, np.ndarray]:
    """Red-cell OD direction of this image and the unit nuclear direction orthogonal to it."""
    total = od.sum(axis=-1)
    st = total > stained_od
    r = RBC_PRIOR.copy()
    if st.sum() > 50:
        cand = np.median(od[st], axis=0)
        n = np.linalg.norm(cand)
        if n > 0:
            cand = cand / n
            # a field full of white cells (a crop) has no red-cell colour: keep the prior then
            if cand @ RBC_PRIOR > cand @ PURPLE_PRIOR and cand @ RBC_PRIOR > 0.95:
                r = cand
    d = PURPLE_PRIOR - (PURPLE_PRIOR @ r) * r
    d /= np.linalg.norm(d)
    return r, d


def _od_at(rgb: np.ndarray, f: int, stained_od: float, cache: dict | None):
    """(od, red-cell direction, nuclear direction) of ``rgb`` reduced by ``f`` (memoised)."""
    if cache is not None and f in cache:
        return cache[f]
    od, _ = optical_density(_block_mean(rgb, f))
    r, d = stain_directions(od, stained_od)
    if cache is not None:
        cache[f] = (od, r, d)
    return od, r, d


def estimate_rbc_diameter(
    rgb: np.ndarray, stained_od: float = 0.08, cache: dict | None = None, factors=None
) -> float | None:
    """Red-cell diameter in pixels, measured on the image, or None without red cells.

    Red cells are the pixels whose absorbance along the image's red-cell colour
    exceeds half of its 95th percentile (outside nuclei), holes (central pallor)
    filled; the diameter is twice the 85th percentile of the distance-transform
    maxima: cell centres, whether the cells lie alone or in rouleaux and clumps.
    The measurement is made where a red cell is ~30 px across (a first guess at a
    coarse resolution picks it), so it does not depend on the magnification.
    Checked on BCCD (100x) and PBC (CellaVision) fields to about +-30 %.
    """
    # The measurement is biased when a red cell is much smaller or larger than ~30 px at
    # the resolution it is made at; measure at a few reductions and keep the one that is
    # most self-consistent (red cell closest to 30 px there).
    side = min(rgb.shape[:2])
    best, best_err = None, np.inf
    if factors is None:
        factors = [f for f in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if 64 <= side / f <= 200]
    factors = [f for f in factors if side / f >= 48]
    if not factors:  # small image: full resolution; huge one: the coarsest listed
        factors = [1] if side < 64 else [max(1, side // 200)]
    for f in factors:
        d = _rbc_diameter_at(rgb, f, stained_od, cache)
        if d is None:
            continue
        err = abs(np.log(d / f / 30.0))
        if err < best_err:
            best, best_err = d, err
    return best


def estimate_rbc_diameter_windows(rgb, stained_od: float = 0.08, size: int = 1024, n: int = 3):
    """Red-cell diameter (px) of a big image: median over ``n`` windows of ``size`` px.

    Each window is measured at reductions 1-12, so any magnification from ~20 to 100x works.
    ``rgb`` may be any array-like with (Y, X, 3+) indexing (numpy, dask, zarr).
    """
    from napari_nucleus_ai.segment._checks import check_rgb

    H, W = rgb.shape[:2]
    sh, sw = min(size, H), min(size, W)
    spots = [(0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25)][:n]
    ds = []
    for fy, fx in spots:
        a = int(min(max(0, fy * H - sh / 2), H - sh))
        b = int(min(max(0, fx * W - sw / 2), W - sw))
        win = rgb[a : a + sh, b : b + sw]
        win = np.asarray(win.compute() if hasattr(win, "compute") else win)
        if win.dtype != np.float32 or win.max() > 1.0:
            win = check_rgb(win)
        d = estimate_rbc_diameter(win, stained_od, factors=(1, 2, 3, 4, 6, 8, 12))
        if d is not None:
            ds.append(d)
    return float(np.median(ds)) if ds else None


def _rbc_diameter_at(rgb: np.ndarray, f0: int, stained_od: float, cache=None) -> float | None:
    from scipy import ndimage as ndi

    od, r, d = _od_at(rgb, f0, stained_od, cache)
    nucm = ndi.binary_dilation(ndi.gaussian_filter(od @ d, 1) > 0.05, iterations=2)
    s = ndi.gaussian_filter(od @ r, 1)
    if (~nucm).sum() < 100:
        return None
    ref = float(np.percentile(s[~nucm], 95))
    if ref < 2 * stained_od:  # hardly any red cells (or a blank field)
        return None
    m = fill_small_holes((s > max(0.5 * stained_od, 0.45 * ref)) | nucm, s.size / 30)
    m = ndi.binary_opening(m)
    dist = ndi.distance_transform_edt(m)
    dist[nucm] = 0
    # local maxima of the distance map (cell centres), as peak_local_max(min_distance=2)
    vals = dist[(dist >= 2) & (dist == ndi.maximum_filter(dist, size=5))]
    if vals.size < 3:
        return None
    return float(np.percentile(vals, 85) * 2 * f0)


def _scale(
    rgb: np.ndarray, pixel_size_um: float | None, stained_od: float, cache=None
) -> tuple[float, str]:
    """Red-cell diameter in px, and where it came from."""
    if pixel_size_um is not None:
        return RBC_DIAMETER_UM / pixel_size_um, "pixel size"
    if min(rgb.shape[:2]) > 600:
        # a big field: measure on a few field-sized windows at every reduction
        d = estimate_rbc_diameter_windows(rgb, stained_od)
    else:
        d = estimate_rbc_diameter(rgb, stained_od, cache)
    if d is None:
        return DEFAULT_RBC_PX, "default"
    return d, "red cells"


def nuclear_signal(rgb: np.ndarray, stained_od: float = DEFAULTS["stained_od"]):
    """Nuclear-stain signal (OD) and total OD of an RGB image in [0, 1]."""
    od, _ = optical_density(rgb)
    _, d = stain_directions(od, stained_od)
    return od @ d.astype(np.float32), od.sum(axis=-1)


def segment_wbc(
    rgb, pixel_size_um: float | None = None, *, return_info: bool = False, **params
) -> np.ndarray:
    """Segment white cells (nucleus + cytoplasm) in a stained smear field.

    Parameters
    ----------
    rgb : (Y, X, 3) or (Y, X, 4) array
        Brightfield smear image (uint8 / uint16 / float in [0, 1] or [0, 255]);
        RGBA is composited over white, grey is accepted.
    pixel_size_um : float, optional
        Pixel size. When not given it is estimated from the red cells (7.5 um).
    nucleus_od, nucleus_low_od : float
        Nuclear-stain absorbance a nucleus reaches / its outline is traced at.
    min_nucleus_um : float
        Equivalent diameter of the smallest white-cell nucleus (platelets and debris are smaller).
    lobe_gap_um : float
        Nuclear parts closer than this are one cell.
    cytoplasm_um : float
        How far the cell may extend beyond its nucleus (0 = nuclei only).
    cytoplasm_od : float
        Nuclear signal of cytoplasm above the red cells'.
    stained_od : float
        Total absorbance separating cells from plasma.
    return_info : bool
        Also return a dict with the pixel size used and how it was found.

    Returns
    -------
    (Y, X) int32 labels (and the info dict when ``return_info``)
    """

    params = validate(SCHEMA, params, "wbc", unknown="parameter", shown="{name}={value}")
    p = {**DEFAULTS, **params}
    img = check_rgb(rgb)
    px_given = check_pixel_size(pixel_size_um)
    H, W = img.shape[:2]
    info = {"pixel_size_um": px_given, "scale_from": "pixel size", "n": 0}
    if float(img.max() - img.min()) < 1.0 / 255:
        raise InputError(None, "smear image is one single colour; nothing to segment")

    cache: dict = {}  # reduced images shared by the scale measurement and the segmentation
    d_rbc, source = _scale(img, px_given, p["stained_od"], cache)
    px_um = px_given if px_given is not None else RBC_DIAMETER_UM / d_rbc
    info.update(pixel_size_um=px_um, scale_from=source)
    f = max(1, int(d_rbc / WORK_RBC_PX))
    info["work_factor"] = f
    wpx = px_um * f  # um per work pixel
    od_r_d = _od_at(img, f, p["stained_od"], cache)
    nuc_s, total = _signals(od_r_d, wpx)
    cells, stats = nuclear_groups(nuc_s, wpx, p)
    info["candidates"] = stats
    if cells.any():
        cells = grow_cytoplasm(cells, nuc_s, granule_signal(od_r_d, wpx), total, wpx, p)
    return _finish(relabel(cells), f, H, W, info, return_info)


def _signals(od_r_d, wpx: float):
    from scipy import ndimage as ndi

    od, _, d = od_r_d
    nuc = od @ d.astype(np.float32)
    nuc_s = ndi.gaussian_filter(nuc, sigma=max(0.6, 0.25 / wpx))
    return nuc_s, od.sum(axis=-1)


def granule_signal(od_r_d, wpx: float) -> np.ndarray:
    """Eosinophilic-granule signal (OD): the part of the absorbance off both the red-cell
    colour and the nuclear direction, on the side of the orange granules (more blue absorbed
    than a red cell), smoothed over a granule and its neighbours (0.5 um)."""
    from scipy import ndimage as ndi

    od, r, d = od_r_d
    e = np.cross(r, d)
    e = (e if e[2] >= 0 else -e) / np.linalg.norm(e)
    return ndi.gaussian_filter(od @ e.astype(np.float32), sigma=max(0.6, 0.5 / wpx))


def nuclear_groups(nuc_s: np.ndarray, wpx: float, p: dict):
    """Label white-cell nuclei (lobes grouped) in a nuclear-signal image at ``wpx`` um/px.

    Returns the labels and a table (dict of arrays) describing every candidate
    group with whether it was kept.
    """
    from scipy import ndimage as ndi

    empty = np.zeros(nuc_s.shape, np.int32), {}
    lab, n = ndi.label(nuc_s > p["nucleus_low_od"])
    if n == 0:
        return empty
    strong = np.zeros(n + 1, bool)
    strong[np.unique(lab[nuc_s > p["nucleus_od"]])] = True
    strong[0] = False
    nucleus = fill_small_holes(strong[lab], (1.5 / wpx) ** 2)
    # lobes closer than the gap are one cell
    gap_px = p["lobe_gap_um"] / wpx
    if gap_px >= 1:
        groups, ng = ndi.label(ndi.distance_transform_edt(~nucleus) <= gap_px / 2.0)
        cells = np.where(nucleus, groups, 0)
    else:
        cells, ng = ndi.label(nucleus)
    if ng == 0:
        return empty
    ids = np.arange(1, ng + 1)
    area_um2 = np.bincount(cells.ravel(), minlength=ng + 1)[1:] * wpx * wpx
    # the largest single nuclear part of each group (a lobe; a platelet clump has only granules)
    parts, npart = ndi.label(nucleus)
    part_area = np.bincount(parts.ravel(), minlength=npart + 1).astype(float) * wpx * wpx
    part_area[0] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        largest = np.asarray(ndi.maximum(part_area[parts], cells, ids), float)
        peak = np.asarray(ndi.maximum(nuc_s, cells, ids), float)
        mean = np.asarray(ndi.mean(nuc_s, cells, ids), float)
    min_area = np.pi / 4 * p["min_nucleus_um"] ** 2
    # stain content ~ DNA content: a nucleus has far more than a platelet or a clump of them
    stain = area_um2 * mean
    keep = (area_um2 >= min_area) & (stain >= p["min_stain"])
    stats = {
        "area_um2": area_um2,
        "stain": stain,
        "largest_um2": largest,
        "peak_od": peak,
        "mean_od": mean,
        "centroid": _centroids(cells, ids),
        "keep": keep,
    }
    lut = np.concatenate([[0], np.where(keep, ids, 0)]).astype(np.int32)
    return lut[cells], stats


def _centroids(cells, ids):
    from scipy import ndimage as ndi

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(ndi.center_of_mass(cells > 0, cells, ids), float).reshape(-1, 2)


def grow_cytoplasm(cells, nuc_s, gran_s, total, wpx, p):
    """Grow nuclei into the lightly stained cytoplasm around them (not into red cells or plasma).

    Cytoplasm is stained, within ``cytoplasm_um`` of its nucleus, and either lilac / blue (a
    nuclear signal above ``cytoplasm_od``) or granular like an eosinophil's (a granule signal
    above ``granule_od`` where the stain is denser than most of a red cell: 0.8 x the median
    absorbance of the field's stained pixels, which are mostly red cells).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    reach = p["cytoplasm_um"] / wpx
    if reach < 1:
        return cells
    dist = ndi.distance_transform_edt(cells == 0)
    stained = total > p["stained_od"]
    colour = nuc_s > p["cytoplasm_od"]
    if stained.any():
        colour |= (gran_s > p["granule_od"]) & (total > 0.8 * np.median(total[stained]))
    cyto = stained & colour & (dist <= reach)
    cyto = ndi.binary_opening(cyto, structure=_disk(max(1, int(round(0.5 / wpx)))))
    grow = fill_small_holes(cyto | (cells > 0), (2.0 / wpx) ** 2)
    return watershed(dist, cells, mask=grow)


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy * yy + xx * xx <= r * r + r


def _finish(work_labels, f, H, W, info, return_info):
    if f > 1 and work_labels.shape != (H, W):
        out = np.zeros((H, W), np.int32)
        up = np.repeat(np.repeat(work_labels, f, axis=0), f, axis=1)
        out[: up.shape[0], : up.shape[1]] = up
        # the rim left over by the block reduction copies its neighbour
        if up.shape[0] < H:
            out[up.shape[0] :, : up.shape[1]] = up[-1:, :]
        if up.shape[1] < W:
            out[:, up.shape[1] :] = out[:, up.shape[1] - 1 : up.shape[1]]
        work_labels = out
    work_labels = work_labels.astype(np.int32, copy=False)
    info["n"] = int(work_labels.max())
    return (work_labels, info) if return_info else work_labels
