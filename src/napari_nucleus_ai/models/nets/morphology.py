"""A fixed, rotation-invariant morphology descriptor of a centred white-cell crop.

The descriptor measures what a haematologist looks at, on Romanowsky-stained
(May-Gruenwald-Giemsa, Wright) brightfield crops:

* **stain-normalised colour**: optical density ``-log(I / I_white)`` per channel, the
  white level taken from the crop's own brightest pixels, so illumination and
  camera gain drop out;
* **the nucleus**: the connected parts of a high-density mask (green optical
  density above a threshold relative to the densest part of the crop centre) that
  lie near the crop centre - area, perimeter, solidity, eccentricity, number of
  lobes (connected parts, and parts left after erosions of growing radius),
  thickness from the distance transform, colour and texture;
* **the cell**: a watershed of the stained foreground seeded by the nucleus and by
  the centres of the neighbouring red cells - cell area, nucleus / cell ratio,
  roundness;
* **the cytoplasm** (cell minus nucleus): colour (blue agranular, pink/orange
  eosinophil granules, purple basophil granules), granularity (difference of
  Gaussians energy, local standard deviation) and rotation-invariant local binary
  patterns;
* **radial profiles** of optical density around the nucleus centre, and
  centre-weighted optical-density histograms.

Every measurement is invariant to rotations and flips of the crop (up to
resampling) and sizes are in fractions of the crop side, so the model's card
fixes the physical scale. The code is fixed; there is nothing to learn and
nothing is read from a model file. numpy, scipy and scikit-image; :func:`describe_cells`
(the batched form every model uses) does its Gabor FFTs in torch when torch is loaded.
"""

from __future__ import annotations

import numpy as np

N_RINGS = 8
N_HIST = 8
_LBP_P = 8


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``(H, W, 3)`` of an RGB crop in [0, 1], white level from the crop."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    white = np.percentile(rgb.reshape(-1, rgb.shape[-1]), 99.0, axis=0)
    white = np.maximum(white, 0.2)
    return -np.log(np.clip(rgb / white, 1e-3, 1.0))


def _label_min(v: np.ndarray, lab: np.ndarray, n: int) -> np.ndarray:
    """``scipy.ndimage.minimum(v, lab, range(1, n + 1))`` (labels 1..n all present) by one
    unbuffered ``np.minimum.at`` instead of scipy's sort of every pixel: the same values."""
    out = np.full(n + 1, np.inf, dtype=np.result_type(v.dtype, np.float64))
    np.minimum.at(out, lab.ravel(), v.ravel())
    return out[1:]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)`` by one labelling of the background
    (4-connected, as its default structure): the background parts that do not touch the
    border are holes. The same mask, without scipy's dilation to convergence."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(~mask)
    keep = np.zeros(n + 1, bool)
    keep[0] = True
    keep[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    return mask | ~keep[lab]


def _cross_step(mask: np.ndarray, op) -> np.ndarray:
    """One erosion (``op`` logical and) or dilation (logical or) of a boolean mask by the
    3 x 3 cross, outside the image False: scipy's ``binary_erosion`` / ``binary_dilation``
    with their default structure and border value, by 4 shifted array operations."""
    p = np.pad(mask, 1)
    out = p[1:-1, 1:-1].copy()
    for s in (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]):
        op(out, s, out=out)
    return out


def _erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, iterations=iterations)``: the same mask."""
    for _ in range(iterations):
        mask = _cross_step(mask, np.logical_and)
    return mask


def _dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, iterations=iterations)``: the same mask."""
    for _ in range(iterations):
        mask = _cross_step(mask, np.logical_or)
    return mask


def _open(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, iterations=iterations)``: the same mask."""
    return _dilate(_erode(mask, iterations), iterations)


_RADII: dict = {}


def _radius(h: int, w: int) -> np.ndarray:
    """Distance of every pixel from the centre of an ``(h, w)`` crop in crop heights (cached)."""
    if (h, w) not in _RADII:
        yy, xx = np.mgrid[:h, :w]
        r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / h
        r.flags.writeable = False
        _RADII.clear()  # one crop size at a time in practice
        _RADII[(h, w)] = r
    return _RADII[(h, w)]


def _smooth(h: int) -> float:
    """The Gaussian smoothing (pixels) of the optical density before segmentation."""
    return 0.01 * h + 0.5


def nucleus_mask(od: np.ndarray) -> np.ndarray:
    """Boolean mask of the central cell's nucleus (all its lobes) from optical density."""
    return _nucleus(od)[0]


def _nucleus(od: np.ndarray, dens: np.ndarray | None = None):
    """:func:`nucleus_mask` and the distance to it (pixels, exact up to ``_FAR`` crop heights:
    :func:`_distance_to`) when it was computed for the final mask (None otherwise);
    ``dens``: the smoothed green optical density when the caller has it."""
    from scipy import ndimage as ndi

    h, w = od.shape[:2]
    r = _radius(h, w)
    if dens is None:
        dens = ndi.gaussian_filter(od[..., 1], _smooth(h))
    peak = np.percentile(dens[r < 0.2], 99.5)
    background = np.median(dens)
    thr = background + 0.5 * (peak - background)
    mask = _open(dens > thr)
    lab, n = ndi.label(mask)
    if n == 0:
        return r <= r.min() + 0.02, None
    index = np.arange(1, n + 1)
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:] / h**2
    dist = _label_min(r, lab, n) - np.sqrt(area) * 0.25  # big parts first
    nucleus = lab == index[int(np.argmin(dist))]
    size = np.count_nonzero(nucleus)
    far = None
    for _ in range(3):  # lobes: parts close to the nucleus found so far (chains of lobes)
        far = _distance_to(nucleus, _FAR * h)
        near = _label_min(far / h, lab, n)
        take = np.zeros(n + 1, bool)
        take[1:] = near < 0.04
        grown = nucleus | take[lab]
        grown_size = np.count_nonzero(grown)
        if grown_size == size:
            return nucleus, far
        nucleus, size, far = grown, grown_size, None
    return nucleus, far


_FAR = 0.12  # the cell reaches this far (crop heights) from its nucleus


def _distance_to(mask: np.ndarray, reach: float) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(~mask)`` (pixels; ``mask`` not empty) wherever
    that is at most ``reach``; elsewhere that distance or ``inf``. Computed on the mask's
    bounding box grown beyond ``reach``: every pixel within ``reach`` of the mask is in it and
    has its nearest mask pixel there."""
    from scipy import ndimage as ndi

    win = _box(mask, int(reach) + 2)
    out = np.full(mask.shape, np.inf)
    out[win] = ndi.distance_transform_edt(~mask[win])
    return out


def _peaks(image: np.ndarray, fg: np.ndarray, min_distance: int) -> np.ndarray:
    """``skimage.feature.peak_local_max(image, min_distance=min_distance, labels=fg)`` for a
    boolean ``fg`` (one label): the same peaks ``(K, 2)`` in the same order.

    As there: the region is the bounding box of ``fg`` away from the image border by
    ``min_distance``; its local maxima (maximum filter of side ``2 min_distance + 1``, edges
    repeated, outside ``fg`` the lowest float) above the image minimum, or the isolated
    ``fg`` pixels when every ``fg`` pixel is one; highest first (stable order); each kept
    unless a kept one is closer than ``min_distance`` in both rows and columns. The spacing
    is one vectorised pass per kept peak instead of scikit-image's k-d tree queries."""
    from scipy import ndimage as ndi

    b = min_distance
    inner = np.zeros_like(fg)
    inner[b : fg.shape[0] - b, b : fg.shape[1] - b] = fg[b : fg.shape[0] - b, b : fg.shape[1] - b]
    if not inner.any():
        return np.empty((0, 2), dtype=int)
    roi = _box(inner)
    mask = fg[roi]
    img = image[roi].copy()
    img[~mask] = np.finfo(img.dtype).min
    out = img == ndi.maximum_filter(img, size=2 * b + 1, mode="nearest")
    if np.all(out[mask]):
        out[:] = False
        out[mask & ~_open(mask)] = True
    out &= img > image.min()
    ys, xs = np.nonzero(out)
    order = np.argsort(-img[ys, xs], kind="stable")
    ys, xs = ys[order], xs[order]
    keep, alive = np.zeros(len(ys), bool), np.ones(len(ys), bool)
    i = 0
    while (nxt := np.flatnonzero(alive[i:])).size:
        i += nxt[0]
        keep[i] = True
        alive &= (np.abs(ys - ys[i]) >= b) | (np.abs(xs - xs[i]) >= b)
    return np.stack([ys[keep] + roi[0].start, xs[keep] + roi[1].start], 1)


def cell_mask(od: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """The central cell (nucleus + cytoplasm): watershed of the stained foreground."""
    return _cell(od.sum(-1), nucleus)


def _cell(odsum, nucleus, far=None, dens=None) -> np.ndarray:
    """:func:`cell_mask` from the optical density summed over the channels ``odsum`` and,
    when given, the distance to the nucleus ``far`` (exact up to ``_FAR`` crop heights, see
    :func:`_distance_to`) and the smoothed ``odsum`` ``dens``."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    h = odsum.shape[0]
    if dens is None:
        dens = ndi.gaussian_filter(odsum, _smooth(h))
    rest = dens[~nucleus] if nucleus.size - np.count_nonzero(nucleus) > 16 else dens.ravel()
    try:  # background vs stained (red cells, cytoplasm), the nucleus left out
        t = threshold_otsu(rest)
    except ValueError:
        t = float(rest.mean())
    fg = _fill_holes(dens > t) | nucleus
    dist = ndi.distance_transform_edt(fg)
    markers = np.zeros(fg.shape, np.int32)
    markers[nucleus] = 1
    peaks = _peaks(dist, fg, max(2, int(0.04 * h)))
    if far is None:
        far = ndi.distance_transform_edt(~nucleus)
    for i, (y, x) in enumerate(peaks):
        if far[y, x] > 0.06 * h and not nucleus[y, x]:
            markers[y, x] = i + 2
    ws = watershed(-dist, markers, mask=fg)
    cell = _open((ws == 1) & (far < _FAR * h), max(1, int(0.01 * h)))
    return _fill_holes(cell | nucleus)


def _convex_area(mask: np.ndarray) -> int:
    """Pixel count of scikit-image's ``convex_hull_image`` of a non-empty ``mask`` (the
    ``area_convex`` of ``regionprops``), without rasterising the hull.

    As there, the hull is that of the pixels' edge midpoints (centre +- 0.5 along each axis;
    those of each row's first and last pixels span it) and a pixel counts when its centre
    lies inside the hull or on its boundary. In doubled coordinates every vertex is an
    integer point, so each row's first and last pixel inside are exact integer divisions."""
    from scipy.spatial import ConvexHull

    rows = np.flatnonzero(mask.any(1))
    sub = mask[rows]
    y = 2 * rows.astype(np.int64)
    lo = 2 * np.argmax(sub, 1).astype(np.int64)
    hi = 2 * (mask.shape[1] - 1 - np.argmax(sub[:, ::-1], 1)).astype(np.int64)
    mids = ((0, -1, lo), (0, 1, hi), (-1, 0, lo), (1, 0, lo), (-1, 0, hi), (1, 0, hi))
    pts = np.concatenate([np.stack([y + a, x + b], 1) for a, b, x in mids])
    v = pts[ConvexHull(pts).vertices]
    py, px = v[:, 0], v[:, 1]
    qy, qx = np.roll(py, -1), np.roll(px, -1)
    ys = 2 * np.arange(rows[0], rows[-1] + 1, dtype=np.int64)[:, None]
    big = np.int64(1) << 40
    dy = qy - py
    # edges crossing each row at x = num / den (doubled), den > 0; the vertices on it
    cross = (ys >= np.minimum(py, qy)) & (ys <= np.maximum(py, qy)) & (dy != 0)
    num = (px * dy + (ys - py) * (qx - px)) * np.sign(dy)
    den = np.maximum(2 * np.abs(dy), 1)
    on = ys == py
    first = np.minimum(
        np.where(cross, -(-num // den), big).min(1), np.where(on, -(-px // 2), big).min(1)
    )
    last = np.maximum(np.where(cross, num // den, -big).max(1), np.where(on, px // 2, -big).max(1))
    return int(np.maximum(last - first + 1, 0).sum())


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


def _perimeter(img: np.ndarray) -> float:
    """``skimage.measure.perimeter(img, 4)`` of a boolean image, the same value: its border
    pixels (not in the 4-connected erosion) coded by their border neighbours (1 + 2 per edge
    neighbour + 10 per corner neighbour), the code histogram dotted with the same weights."""
    p = np.pad(img, 1)
    c = p[1:-1, 1:-1]
    inner = c & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    b = np.pad(c & ~inner, 1).astype(np.uint8)
    code = (b[:-2, :-2] + b[:-2, 2:] + b[2:, :-2] + b[2:, 2:]) * 10
    code += (b[:-2, 1:-1] + b[2:, 1:-1] + b[1:-1, :-2] + b[1:-1, 2:]) * 2
    code += b[1:-1, 1:-1]
    return float(np.bincount(code.ravel(), minlength=50) @ _PERIMETER_WEIGHTS)


def _eccentricity(img: np.ndarray) -> float:
    """``regionprops``' eccentricity of the boolean image ``img`` (its bounding box), by the
    same scikit-image moment functions on the same arguments, without the region object."""
    from skimage.measure import inertia_tensor, inertia_tensor_eigvals, moments, moments_central

    u, spacing = img.astype(np.uint8), np.ones(2)
    m = moments(u, 3, spacing=spacing)
    centre = np.asarray((m[1, 0] / m[0, 0], m[0, 1] / m[0, 0]))
    mu = moments_central(u, centre, order=3, spacing=spacing)
    l1, l2 = inertia_tensor_eigvals(img, T=inertia_tensor(img, mu, spacing=spacing))
    return 0.0 if l1 == 0 else float(np.sqrt(1 - l2 / l1))


def _region_shape(mask: np.ndarray, h: int) -> list[float]:
    """Area, perimeter, roundness, solidity, eccentricity (``regionprops``' values of the
    mask as one region) and the number of 8-connected parts."""
    from scipy import ndimage as ndi

    area = np.count_nonzero(mask)
    if not area:
        return [0.0] * 6
    img = mask[_box(mask)]
    area = float(area)
    perim = max(_perimeter(img), 1.0)
    return [
        area / h**2,
        perim / h,
        4 * np.pi * area / perim**2,
        area / _convex_area(img),  # regionprops' solidity
        _eccentricity(img),
        float(ndi.label(img, np.ones((3, 3), bool))[1]),
    ]


def _box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """Slices of the bounding box of a non-empty ``mask`` grown by ``margin`` pixels, clipped
    to the image."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, w)),
    )


def _lobes(mask: np.ndarray, h: int) -> list[float]:
    """Parts left after erosions of growing radius, and thickness (distance transform).

    Measured on the mask's bounding box grown by one pixel: every pixel of the mask has its
    nearest background pixel there, so the distances are the whole crop's."""
    from scipy import ndimage as ndi

    if not mask.any():
        return [0.0] * 5
    mask = mask[_box(mask, 1)]
    out = []
    dist = ndi.distance_transform_edt(mask)
    for frac in (0.01, 0.02, 0.03):
        core = dist > frac * h
        out.append(float(ndi.label(core)[1]))
    vals = dist[mask] / h
    out += [float(vals.max()), float(vals.mean())]
    return out


def _stats(v: np.ndarray) -> list[float]:
    if v.size == 0:
        return [0.0, 0.0]
    return [float(v.mean()), float(v.std())]


def _lbp_hist(grey: np.ndarray, mask: np.ndarray, radius: float) -> list[float]:
    from skimage.feature import local_binary_pattern

    lo, hi = np.percentile(grey, [1.0, 99.5])
    g8 = np.clip((grey - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    codes = local_binary_pattern(g8, _LBP_P, radius, method="uniform")
    sel = codes[mask] if mask.sum() >= 4 else codes.ravel()
    hist = np.bincount(sel.astype(int), minlength=_LBP_P + 2)[: _LBP_P + 2].astype(float)
    return list(hist / max(hist.sum(), 1.0))


def _nucleus_detail(od, nuc, cyto, centre, h, odsum=None) -> list[float]:
    """Boundary irregularity, chromatin clumping, nucleus hue, cytoplasm vacuoles
    (``odsum``: ``od.sum(-1)`` when the caller has it)."""
    out = []
    edge = nuc & ~_erode(nuc)
    if edge.sum() >= 3:
        ey, ex = np.nonzero(edge)
        rad = np.hypot(ey - centre[0], ex - centre[1])
        out += [float(rad.std() / max(rad.mean(), 1e-3)), float(rad.min() / max(rad.max(), 1e-3))]
    else:
        out += [0.0, 0.0]
    g = od[..., 1][nuc]
    if g.size:
        top = np.percentile(g, 95)
        out += [float((g > 0.85 * top).mean()), float((g < 0.6 * top).mean())]
        for a, b in ((0, 1), (2, 1), (0, 2)):
            out.append(float(np.median(od[..., a][nuc] / (od[..., b][nuc] + 0.05))))
    else:
        out += [0.0] * 5
    if odsum is None:
        odsum = od.sum(-1)
    c = odsum[cyto]
    if c.size:
        out += [float((c < 0.3 * np.median(odsum[nuc])).mean()) if nuc.any() else 0.0]
        for a, b in ((0, 1), (2, 1)):
            out.append(float(np.median(od[..., a][cyto] / (od[..., b][cyto] + 0.05))))
    else:
        out += [0.0] * 3
    return out


def _gabor_energy(grey, masks, h) -> list[float]:
    """First-order scattering-like texture: mean modulus of Gabor responses at 4 scales,
    averaged over 8 orientations (rotation invariant) and its spread over orientations
    (anisotropy), inside each mask."""
    n = grey.shape[0]
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(grey.shape[1])[None, :]
    spec = np.fft.fft2(grey - grey.mean())
    out = []
    for wavelength in (0.02, 0.035, 0.06, 0.1):  # fractions of the crop side
        f0 = 1.0 / (wavelength * h)
        resp = []
        for k in range(8):
            th = np.pi * k / 8
            u = fx * np.cos(th) + fy * np.sin(th)
            v = -fx * np.sin(th) + fy * np.cos(th)
            g = np.exp(-((u - f0) ** 2 + v**2) / (2 * (0.4 * f0) ** 2))
            resp.append(np.abs(np.fft.ifft2(spec * g)))
        resp = np.stack(resp)
        for m in masks:
            if m.sum() < 2:
                out += [0.0, 0.0]
                continue
            per = resp[:, m].mean(1)
            out += [float(per.mean()), float(per.std() / max(per.mean(), 1e-6))]
    return out


def describe_cell(rgb: np.ndarray) -> np.ndarray:
    """Morphology descriptor of one centred crop.

    Parameters
    ----------
    rgb : np.ndarray (H, W, 3)
        RGB crop in [0, 1], the cell at the centre (square; 64-256 px works).

    Returns
    -------
    np.ndarray (F,)
        float32 features, :data:`N_FEATURES` of them.
    """
    from scipy import ndimage as ndi

    rgb = np.asarray(rgb, np.float32)
    h, w = rgb.shape[:2]
    od = optical_density(rgb)
    nuc = nucleus_mask(od)
    cell = cell_mask(od, nuc)
    cyto = cell & ~nuc
    feats: list[float] = []
    feats += _region_shape(nuc, h) + _lobes(nuc, h)
    feats += _region_shape(cell, h)[:5]
    feats.append(float(nuc.sum()) / max(float(cell.sum()), 1.0))
    yy, xx = np.mgrid[:h, :w]
    cy, cx = ndi.center_of_mass(nuc) if nuc.any() else ((h - 1) / 2, (w - 1) / 2)
    feats.append(float(np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2)) / h)
    # colour: optical density and chromaticity in nucleus, cytoplasm and surroundings
    tot = od.sum(-1) + 1e-3
    chroma = od / tot[..., None]
    ring = _dilate(cell, max(1, int(0.06 * h))) & ~cell
    for m in (nuc, cyto, ring):
        for c in range(3):
            feats += _stats(od[..., c][m])
        for c in (0, 2):
            feats += _stats(chroma[..., c][m])
    # granularity: difference-of-Gaussians energy and local contrast
    grey = od.mean(-1)
    for s in (0.005, 0.01, 0.02):
        dog = ndi.gaussian_filter(grey, s * h + 0.3) - ndi.gaussian_filter(grey, 2 * s * h + 0.6)
        feats += [float(np.abs(dog[m]).mean()) if m.any() else 0.0 for m in (nuc, cyto)]
    feats += _nucleus_detail(od, nuc, cyto, (cy, cx), h)
    feats += _gabor_energy(grey, (nuc, cyto), h)
    red = od[..., 1] - od[..., 0]  # eosin-like (orange/pink) vs azure-like (blue/purple)
    feats += _stats(red[cyto]) + [float((red[cyto] > 0.25).mean()) if cyto.any() else 0.0]
    for radius in (1.0, 2.0):
        feats += _lbp_hist(grey, nuc, radius) + _lbp_hist(grey, cyto, radius)
    # radial profiles around the nucleus centre, up to half the crop side
    r = np.hypot(yy - cy, xx - cx) / h
    ring_idx = np.minimum((r / 0.5 * N_RINGS).astype(int), N_RINGS)
    counts = np.bincount(ring_idx.ravel(), minlength=N_RINGS + 1)[:N_RINGS]
    for c in range(3):
        s = np.bincount(ring_idx.ravel(), od[..., c].ravel(), minlength=N_RINGS + 1)[:N_RINGS]
        feats += list(s / np.maximum(counts, 1))
    # centre-weighted optical-density histograms
    yy, xx = np.mgrid[:h, :w]
    wgt = np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / h**2) / (2 * 0.2**2))
    edges = np.linspace(0.0, 2.0, N_HIST + 1)
    for c in range(3):
        hist, _ = np.histogram(np.clip(od[..., c], 0, 1.999), edges, weights=wgt)
        feats += list(hist / wgt.sum())
    return np.asarray(feats, np.float32)


N_FEATURES = int(describe_cell(np.full((32, 32, 3), 0.9, np.float32)).shape[0])


def describe_cells(rgb: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Descriptors ``(N, F)`` float32 of a batch of crops ``(N, H, W, 3)`` in [0, 1].

    The same features as :func:`describe_cell` on each crop: the same masks, shapes, lobes
    and local binary patterns; the other features within float rounding (masked means are
    summed in another order; the Gabor FFTs run in single precision, torch's when it is
    loaded, numpy's otherwise). Whole-batch array operations where the measurement allows
    it (optical density, the segmentation's smoothing, Gabor bank, radial profiles,
    histograms); per crop the segmentation and the masked statistics, these on the pixels
    of the masks or their bounding boxes only (``morph`` runs its frozen backbone on another
    thread meanwhile). Crops go through in chunks of ``chunk``.
    """
    rgb = np.asarray(rgb, np.float32)
    if not len(rgb):
        return np.zeros((0, N_FEATURES), np.float32)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"describe_cells needs (N, H, W, 3) crops, not {rgb.shape}")
    out = [_describe_batch(rgb[i : i + chunk]) for i in range(0, len(rgb), chunk)]
    return np.concatenate(out).astype(np.float32)


# ------------------------------------------------------------------ the batched descriptor
def _mean_std(v: np.ndarray) -> np.ndarray:
    """Mean and (population) std of each row of ``v`` ``(C, K)``, interleaved ``(2 C,)``."""
    v = v.astype(np.float64, copy=False)
    mean = v.mean(1)
    out = np.empty(2 * len(v))
    out[0::2] = mean
    out[1::2] = np.sqrt(((v - mean[:, None]) ** 2).mean(1))
    return out


def _crop_stats(od, odsum, grey, nuc, cyto, ring, h):
    """Per crop: colour statistics (optical density and chromaticity in nucleus, cytoplasm and
    surroundings, 30), difference-of-Gaussians energy (nucleus, cytoplasm at 3 scales, 6) and
    the cytoplasm's eosin-like colour (3), from the masked pixels only.

    The values are :func:`describe_cell`'s: the same float32 pixel values (``od / (odsum +
    1e-3)``, ``od[1] - od[0]``, the Gaussian filters of the grey image bit for bit, see
    :func:`_dog_energy`), averaged in double precision."""
    odf, sf = od.reshape(-1, 3), odsum.ravel()
    colour = np.zeros(30)
    for j, m in enumerate((nuc, cyto, ring)):
        sel = np.flatnonzero(m)
        if not sel.size:
            continue
        g = odf[sel].T
        v = np.empty((5, sel.size), np.float32)
        v[:3] = g
        np.divide(g[::2], sf[sel] + 1e-3, out=v[3:])  # chromaticity of channels 0 and 2
        colour[10 * j : 10 * j + 10] = _mean_std(v)
    dog = _dog_energy(grey, (nuc, cyto), h)
    sel = np.flatnonzero(cyto)
    if sel.size:
        red = odf[sel, 1] - odf[sel, 0]  # eosin-like (orange/pink) vs azure-like (blue/purple)
        red = list(_mean_std(red[None])) + [float(np.mean(red > 0.25))]
    else:
        red = [0.0, 0.0, 0.0]
    return colour, dog, red


def _dog_energy(grey: np.ndarray, masks: tuple, h: int) -> list[float]:
    """Mean absolute difference of Gaussians of ``grey`` ``(H, W)`` inside each mask at the 3
    scales of :func:`describe_cell` (scale-major). Each Gaussian filter runs on the masks'
    bounding box grown by its kernel radius (clipped to the crop), its second pass (along
    axis 1) on the rows of the masks' box only: scipy's separable filter gives there, with
    the same ``reflect`` edges, the same float32 values as on the whole crop."""
    from scipy import ndimage as ndi

    union = np.logical_or.reduce(masks)
    if not union.any():
        return [0.0] * (3 * len(masks))
    ys, xs = _box(union)
    inner = [m[ys, xs] for m in masks]

    def blur(sigma):  # scipy's gaussian_filter: axis 0, then axis 1 (float32 in between)
        by, bx = _box(union, int(4.0 * sigma + 0.5))  # scipy's radius (truncate 4)
        g = ndi.gaussian_filter1d(grey[by, bx], sigma, axis=0)
        g = ndi.gaussian_filter1d(g[ys.start - by.start : ys.stop - by.start], sigma, axis=1)
        return g[:, xs.start - bx.start : xs.stop - bx.start]

    out = []
    for s in (0.005, 0.01, 0.02):
        dog = np.abs(blur(s * h + 0.3) - blur(2 * s * h + 0.6))
        out += [float(np.mean(dog[m], dtype=np.float64)) if m.any() else 0.0 for m in inner]
    return out


def _ring(cell: np.ndarray, width: int) -> np.ndarray:
    """``_dilate(cell, width) & ~cell``, computed on the cell's bounding box grown by
    ``width`` (the dilation does not reach further)."""
    ring = np.zeros_like(cell)
    if cell.any():
        win = _box(cell, width)
        ring[win] = _dilate(cell[win], width) & ~cell[win]
    return ring


def _segment_one(od: np.ndarray, odsum: np.ndarray, dens: tuple = (None, None)):
    """Per-crop part: masks, shape / lobe features, nucleus centre, nucleus detail
    (``odsum``: the crop's ``od.sum(-1)``; ``dens``: the smoothed green optical density and
    ``odsum`` when the caller has them)."""
    from scipy import ndimage as ndi

    h, w = od.shape[:2]
    nuc, far = _nucleus(od, dens[0])
    cell = _cell(odsum, nuc, far, dens[1])
    cyto = cell & ~nuc
    feats = _region_shape(nuc, h) + _lobes(nuc, h) + _region_shape(cell, h)[:5]
    feats.append(float(np.count_nonzero(nuc)) / max(float(np.count_nonzero(cell)), 1.0))
    cy, cx = ndi.center_of_mass(nuc) if nuc.any() else ((h - 1) / 2, (w - 1) / 2)
    feats.append(float(np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2)) / h)
    ring = _ring(cell, max(1, int(0.06 * h)))
    detail = _nucleus_detail(od, nuc, cyto, (cy, cx), h, odsum)
    return nuc, cyto, ring, feats, (cy, cx), detail


_GABOR_BANKS: dict = {}


def _gabor_bank(n: int, m: int, h: int) -> np.ndarray:
    """The 4 x 8 Gabor transfer functions of :func:`_gabor_energy` ``(32, n, m)`` (cached)."""
    key = (n, m, h)
    if key not in _GABOR_BANKS:
        fy = np.fft.fftfreq(n)[:, None]
        fx = np.fft.fftfreq(m)[None, :]
        bank = []
        for wavelength in (0.02, 0.035, 0.06, 0.1):
            f0 = 1.0 / (wavelength * h)
            for k in range(8):
                th = np.pi * k / 8
                u = fx * np.cos(th) + fy * np.sin(th)
                v = -fx * np.sin(th) + fy * np.cos(th)
                bank.append(np.exp(-((u - f0) ** 2 + v**2) / (2 * (0.4 * f0) ** 2)))
        _GABOR_BANKS.clear()  # one crop size at a time in practice
        _GABOR_BANKS[key] = np.stack(bank)
    return _GABOR_BANKS[key]


def _gabor_pairs(n: int, m: int, h: int) -> np.ndarray:
    """The Gabor bank of :func:`_gabor_bank` in float32, each value repeated twice ``(32, n,
    2 m)``: multiplying a complex64 spectrum viewed as float32 (real, imaginary) pairs by it
    is the complex-by-real product, without numpy's casting of the real factor (cached)."""
    key = ("pairs", n, m, h)
    if key not in _GABOR_BANKS:
        bank = _gabor_bank(n, m, h).astype(np.float32)
        _GABOR_BANKS[key] = np.repeat(bank[..., None], 2, -1).reshape(len(bank), n, 2 * m)
    return _GABOR_BANKS[key]


def _gabor_batch(grey: np.ndarray, masks: tuple, h: int, chunk: int = 2) -> np.ndarray:
    """:func:`_gabor_energy` over a batch ``(N, 4 * len(masks) * 2)``: the mean Gabor modulus
    inside each mask (4 scales x 8 orientations) as mean over orientations and relative
    spread. Single-precision FFTs (torch's when it is loaded, numpy's otherwise): the
    features agree with the double-precision loop to ~1e-6 relative. The masked sums go to
    torch ``chunk`` crops per call (with several torch threads its sums depend on that
    grouping; its FFTs do not)."""
    import sys

    n, hh, ww = grey.shape
    nf = 32
    pairs = _gabor_pairs(hh, ww, h)
    flat = [m.reshape(n, -1).astype(np.float32) for m in masks]
    counts = [f.sum(1, dtype=np.float64) for f in flat]
    wsum = np.ascontiguousarray(np.stack(flat, -1))  # (N, HW, n_masks)
    sums = np.zeros((n, nf, len(masks)))
    centred = grey.astype(np.float64) - grey.mean((1, 2), dtype=np.float64)[:, None, None]
    if "torch" in sys.modules:  # the FFTs in torch when it is loaded
        import torch

        spec = torch.fft.fft2(torch.from_numpy(centred)).to(torch.complex64).numpy()
        spec = spec.view(np.float32)[:, None]  # (N, 1, H, 2 W): real, imaginary pairs
        ws = torch.from_numpy(wsum)
        # one crop per FFT call (faster than several), in buffers reused across crops
        # (allocating them anew, page faults cost as much as the arithmetic); numpy's
        # products and modulus are vectorised (torch's strided ones took several times as
        # long), torch does the FFTs
        prod = torch.empty((1, nf, hh, ww), dtype=torch.complex64)
        z = torch.empty_like(prod)
        mod = torch.empty((chunk, nf, hh, ww), dtype=torch.float32)
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            for j in range(k):
                np.multiply(spec[i + j], pairs, out=prod[0].numpy().view(np.float32))
                torch.fft.ifft2(prod, out=z)
                np.abs(z[0].numpy(), out=mod[j].numpy())
            sums[i : i + k] = torch.bmm(mod[:k].reshape(k, nf, -1), ws[i : i + k])
    else:
        spec = np.fft.fft2(centred).astype(np.complex64)
        bank = pairs[..., ::2]
        for i in range(n):
            resp = np.abs(np.fft.ifft2(spec[i] * bank))
            sums[i] = resp.reshape(nf, -1) @ wsum[i]
    out = np.zeros((n, 4, len(masks), 2))
    for j, c in enumerate(counts):
        per = sums[:, :, j].reshape(n, 4, 8) / np.maximum(c, 1.0)[:, None, None]
        mu = per.mean(-1)
        out[:, :, j, 0] = mu
        out[:, :, j, 1] = per.std(-1) / np.maximum(mu, 1e-6)
        out[c < 2, :, j] = 0.0
    return out.reshape(n, -1)


_LBP_TAPS: dict = {}


def _lbp_taps(radius: float, h: int, w: int) -> list:
    """The ``_LBP_P`` circular neighbours of scikit-image's ``local_binary_pattern`` at
    ``radius`` for an ``(h, w)`` image: per neighbour the row and column offsets of its
    top-left pixel and, where it falls between pixels, its bilinear weights
    ``(1 - dr, dr, 1 - dc, dc)`` per row / column (``None`` on the pixel grid). The
    positions and weights are computed as scikit-image does (``r + rp`` in double
    precision, floored), so the interpolated values are the same doubles (cached)."""
    key = (radius, h, w)
    if key in _LBP_TAPS:
        return _LBP_TAPS[key]
    ang = 2 * np.pi * np.arange(_LBP_P, dtype=np.double) / _LBP_P
    rp = np.round(-radius * np.sin(ang), 5)
    cp = np.round(radius * np.cos(ang), 5)
    rows, cols = np.arange(h, dtype=np.double), np.arange(w, dtype=np.double)
    taps = []
    for i in range(_LBP_P):
        pr, pc = rows + rp[i], cols + cp[i]
        r0, c0 = np.floor(pr), np.floor(pc)
        dr, dc = pr - r0, pc - c0
        a, b = int(r0[0]), int(c0[0])  # the same offset for every row / column
        if not dr.any() and not dc.any():
            taps.append((a, b, None))
        else:
            taps.append((a, b, (1 - dr, dr, 1 - dc, dc)))
    if len(_LBP_TAPS) > 8:
        _LBP_TAPS.clear()
    _LBP_TAPS[key] = taps
    return taps


def _lbp_uniform(g8: np.ndarray, radius: float, box: tuple | None = None) -> np.ndarray:
    """``skimage.feature.local_binary_pattern(g8, _LBP_P, radius, "uniform")`` of an 8-bit
    image ``(H, W)`` as uint8 codes, in the rows ``y0:y1`` and columns ``x0:x1`` of ``box``
    (the whole image by default): the same codes.

    As in scikit-image, each neighbour is the bilinear interpolation (zero outside the image)
    ``(1 - dr) * top + dr * bottom`` with ``top = (1 - dc) * I[r0, c0] + dc * I[r0, c1]``, in
    double precision and in that order; its bit is ``neighbour - centre >= 0``; a pattern
    with at most 2 changes between consecutive bits (the wrap from the last bit to the first
    not counted) has the number of set bits as code, any other ``_LBP_P + 1``. Whole-array
    operations on small buffers (they stay in cache)."""
    h, w = g8.shape
    y0, y1, x0, x1 = box if box is not None else (0, h, 0, w)
    bh, bw = y1 - y0, x1 - x0
    taps = _lbp_taps(radius, h, w)
    pad = int(np.ceil(radius)) + 1
    padded = np.zeros((h + 2 * pad, w + 2 * pad))
    padded[pad : pad + h, pad : pad + w] = g8

    def at(a, b):
        return padded[pad + y0 + a : pad + y1 + a, pad + x0 + b : pad + x1 + b]

    img = at(0, 0)
    top, bot, tmp = np.empty((bh, bw)), np.empty((bh, bw)), np.empty((bh, bw))
    bits = np.empty((_LBP_P, bh, bw), bool)
    for i, (a, b, wts) in enumerate(taps):
        if wts is None:  # on the grid: the pixel itself (x - c >= 0 is x >= c for doubles)
            np.greater_equal(at(a, b), img, out=bits[i])
            continue
        wr0, wr1 = wts[0][y0:y1, None], wts[1][y0:y1, None]
        wc0, wc1 = wts[2][x0:x1], wts[3][x0:x1]
        np.multiply(wc0, at(a, b), out=top)
        top += np.multiply(wc1, at(a, b + 1), out=tmp)
        np.multiply(wc0, at(a + 1, b), out=bot)
        bot += np.multiply(wc1, at(a + 1, b + 1), out=tmp)
        top *= wr0
        bot *= wr1
        top += bot
        np.greater_equal(top, img, out=bits[i])
    codes = bits.sum(0, dtype=np.uint8)
    changes = np.not_equal(bits[:-1], bits[1:]).sum(0, dtype=np.uint8)
    codes[changes > 2] = _LBP_P + 1
    return codes


def _lbp_batch(grey: np.ndarray, masks: tuple, radii: tuple = (1.0, 2.0)) -> np.ndarray:
    """:func:`_lbp_hist` over a batch, for each radius and mask in turn ``(N, R * M * (P +
    2))``: the uniform local binary patterns (:func:`_lbp_uniform`, scikit-image's codes) of
    each crop's 8-bit grey image (stretched once for all radii), counted inside each mask (the
    whole crop for a mask of fewer than 4 pixels), computed on the masks' bounding box only."""
    n = len(grey)
    lo, hi = np.percentile(grey.reshape(n, -1), [1.0, 99.5], axis=1)
    scale = np.maximum(hi - lo, 1e-6)
    g8 = np.clip((grey - lo[:, None, None]) / scale[:, None, None] * 255, 0, 255)
    g8 = g8.astype(np.uint8)
    nb = _LBP_P + 2
    out = np.zeros((n, len(radii), len(masks), nb))
    for i in range(n):
        use = [m[i] if np.count_nonzero(m[i]) >= 4 else None for m in masks]
        box = None
        if all(u is not None for u in use):
            union = np.logical_or.reduce(use)
            rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
            box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
            use = [u[box[0] : box[1], box[2] : box[3]] for u in use]
        for j, radius in enumerate(radii):
            codes = _lbp_uniform(g8[i], radius, box)
            for k, u in enumerate(use):
                sel = codes.ravel() if u is None else codes[u]
                out[i, j, k] = np.bincount(sel, minlength=nb)[:nb]
    out /= np.maximum(out.sum(-1, keepdims=True), 1.0)
    return out.reshape(n, -1)


def _radial_profiles(od: np.ndarray, centres: np.ndarray) -> list[np.ndarray]:
    """Mean optical density per channel in ``N_RINGS`` rings around each crop's nucleus
    centre ``centres`` ``(N, 2)``, up to half the crop side: 3 arrays ``(N, N_RINGS)``."""
    n, h, w = od.shape[:3]
    cy, cx = centres[:, 0, None, None], centres[:, 1, None, None]
    r = np.hypot(np.arange(h)[None, :, None] - cy, np.arange(w)[None, None, :] - cx)
    r /= h
    r *= 2 * N_RINGS  # r / 0.5 * N_RINGS: factors of powers of two, exact
    ring_idx = r.astype(np.intp)
    np.minimum(ring_idx, N_RINGS, out=ring_idx)
    ring_idx += (N_RINGS + 1) * np.arange(n)[:, None, None]
    idx = ring_idx.ravel()
    size = n * (N_RINGS + 1)
    counts = np.bincount(idx, minlength=size).reshape(n, -1)[:, :N_RINGS]
    out = []
    for c in range(3):
        sc = np.bincount(idx, od[..., c].ravel(), minlength=size).reshape(n, -1)[:, :N_RINGS]
        out.append(sc / np.maximum(counts, 1))
    return out


def _od_histograms(od: np.ndarray) -> list[np.ndarray]:
    """Centre-weighted histograms of optical density per channel over [0, 2), normalised by
    the total weight: 3 arrays ``(N, N_HIST)``."""
    n, h, w = od.shape[:3]
    yy, xx = np.mgrid[:h, :w]
    wgt = np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / h**2) / (2 * 0.2**2))
    # np.histogram's bins of width 2 / N_HIST over [0, 2) by one product: with N_HIST / 2 a
    # power of two the product and the bin edges are exact in floating point
    bins = np.clip(od, 0, 1.999)
    bins *= N_HIST / 2
    bins = bins.astype(np.uint8).transpose(0, 3, 1, 2).reshape(n, 3, -1)
    hist = np.empty((n, 3, N_HIST))
    for i in range(n):  # one crop and channel at a time: the weights need no copy
        for c in range(3):
            hist[i, c] = np.bincount(bins[i, c], wgt.ravel(), N_HIST)
    hist /= wgt.sum()
    return [hist[:, c] for c in range(3)]


def _describe_batch(rgb: np.ndarray) -> np.ndarray:
    """:func:`describe_cell` of every crop of ``rgb`` ``(N, H, W, 3)``, batched."""
    from scipy import ndimage as ndi

    n, h, w = rgb.shape[:3]
    x = np.clip(rgb, 0.0, 1.0)
    white = np.maximum(np.percentile(x.reshape(n, -1, 3), 99.0, axis=1), 0.2)
    od = x / white[:, None, None, :]  # -log(clip(x / white, 1e-3, 1)), in place
    np.clip(od, 1e-3, 1.0, out=od)
    np.log(od, out=od)
    np.negative(od, out=od)
    # od.sum(-1) and od.mean(-1), bit for bit (numpy sums the 3 channels in order from +0.0;
    # the mean is the sum over 3), by whole-array additions
    odsum = od[..., 0] + 0.0
    odsum += od[..., 1]
    odsum += od[..., 2]
    grey = odsum / 3
    # the segmentation's smoothing for the whole batch (per crop, the same values)
    sm = (0, _smooth(h), _smooth(h))
    dens = ndi.gaussian_filter(od[..., 1], sm), ndi.gaussian_filter(odsum, sm)
    # (2 threads here measured slower beside the backbone)
    seg = [_segment_one(od[i], odsum[i], (dens[0][i], dens[1][i])) for i in range(n)]
    nuc = np.stack([s[0] for s in seg])
    cyto = np.stack([s[1] for s in seg])
    ring = np.stack([s[2] for s in seg])
    stats = [_crop_stats(od[i], odsum[i], grey[i], nuc[i], cyto[i], ring[i], h) for i in range(n)]
    cols = [np.asarray([s[3] for s in seg], np.float64)]  # shapes and lobes
    cols += [np.asarray([s[k] for s in stats], np.float64) for k in (0, 1)]  # colour, DoG
    cols.append(np.asarray([s[5] for s in seg], np.float64))  # nucleus detail
    cols.append(_gabor_batch(grey, (nuc, cyto), h))
    cols.append(np.asarray([s[2] for s in stats], np.float64))  # eosin-like colour
    cols.append(_lbp_batch(grey, (nuc, cyto)))
    centres = np.asarray([s[4] for s in seg], np.float64)
    cols += _radial_profiles(od, centres) + _od_histograms(od)
    return np.concatenate(cols, 1).astype(np.float32)
