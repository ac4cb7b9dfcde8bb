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
nothing is read from a model file. numpy, scipy and scikit-image only.
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


def nucleus_mask(od: np.ndarray) -> np.ndarray:
    """Boolean mask of the central cell's nucleus (all its lobes) from optical density."""
    from scipy import ndimage as ndi

    h, w = od.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / h
    dens = ndi.gaussian_filter(od[..., 1], 0.01 * h + 0.5)
    peak = np.percentile(dens[r < 0.2], 99.5)
    background = np.median(dens)
    thr = background + 0.5 * (peak - background)
    mask = ndi.binary_opening(dens > thr, iterations=1)
    lab, n = ndi.label(mask)
    if n == 0:
        return r <= r.min() + 0.02
    index = np.arange(1, n + 1)
    area = ndi.sum(np.ones_like(r), lab, index) / h**2
    dist = np.asarray(ndi.minimum(r, lab, index)) - np.sqrt(area) * 0.25  # big parts first
    nucleus = lab == index[int(np.argmin(dist))]
    for _ in range(3):  # lobes: parts close to the nucleus found so far (chains of lobes)
        gap = ndi.distance_transform_edt(~nucleus) / h
        near = np.asarray(ndi.minimum(gap, lab, index))
        grown = nucleus | np.isin(lab, index[near < 0.04])
        if grown.sum() == nucleus.sum():
            break
        nucleus = grown
    return nucleus


def cell_mask(od: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """The central cell (nucleus + cytoplasm): watershed of the stained foreground."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    h = od.shape[0]
    dens = ndi.gaussian_filter(od.sum(-1), 0.01 * h + 0.5)
    rest = dens[~nucleus] if (~nucleus).sum() > 16 else dens.ravel()
    try:  # background vs stained (red cells, cytoplasm), the nucleus left out
        t = threshold_otsu(rest)
    except ValueError:
        t = float(rest.mean())
    fg = ndi.binary_fill_holes(dens > t) | nucleus
    dist = ndi.distance_transform_edt(fg)
    markers = np.zeros(fg.shape, np.int32)
    markers[nucleus] = 1
    peaks = peak_local_max(dist, min_distance=max(2, int(0.04 * h)), labels=fg.astype(int))
    far = ndi.distance_transform_edt(~nucleus)
    for i, (y, x) in enumerate(peaks):
        if far[y, x] > 0.06 * h and not nucleus[y, x]:
            markers[y, x] = i + 2
    ws = watershed(-dist, markers, mask=fg)
    cell = ndi.binary_opening((ws == 1) & (far < 0.12 * h), iterations=max(1, int(0.01 * h)))
    return ndi.binary_fill_holes(cell | nucleus)


def _region_shape(mask: np.ndarray, h: int) -> list[float]:
    from skimage.measure import label, regionprops

    if not mask.any():
        return [0.0] * 6
    lab = label(mask)
    props = regionprops(mask.astype(np.uint8))[0]
    area = float(mask.sum())
    perim = max(float(props.perimeter), 1.0)
    return [
        area / h**2,
        perim / h,
        4 * np.pi * area / perim**2,
        float(props.solidity),
        float(props.eccentricity),
        float(lab.max()),
    ]


def _lobes(mask: np.ndarray, h: int) -> list[float]:
    """Parts left after erosions of growing radius, and thickness (distance transform)."""
    from scipy import ndimage as ndi

    out = []
    dist = ndi.distance_transform_edt(mask)
    for frac in (0.01, 0.02, 0.03):
        core = dist > frac * h
        out.append(float(ndi.label(core)[1]))
    vals = dist[mask] / h if mask.any() else np.zeros(1)
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


def _nucleus_detail(od, nuc, cyto, centre, h) -> list[float]:
    """Boundary irregularity, chromatin clumping, nucleus hue, cytoplasm vacuoles."""
    from scipy import ndimage as ndi

    out = []
    edge = nuc & ~ndi.binary_erosion(nuc)
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
    c = od.sum(-1)[cyto]
    if c.size:
        out += [float((c < 0.3 * np.median(od.sum(-1)[nuc])).mean()) if nuc.any() else 0.0]
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
    ring = ndi.binary_dilation(cell, iterations=max(1, int(0.06 * h))) & ~cell
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
    wgt = np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / h**2) / (2 * 0.2**2))
    edges = np.linspace(0.0, 2.0, N_HIST + 1)
    for c in range(3):
        hist, _ = np.histogram(np.clip(od[..., c], 0, 1.999), edges, weights=wgt)
        feats += list(hist / wgt.sum())
    return np.asarray(feats, np.float32)


N_FEATURES = int(describe_cell(np.full((32, 32, 3), 0.9, np.float32)).shape[0])


def describe_cells(rgb: np.ndarray) -> np.ndarray:
    """Descriptors ``(N, F)`` of a batch of crops ``(N, H, W, 3)`` in [0, 1]."""
    return np.stack([describe_cell(x) for x in rgb]) if len(rgb) else np.zeros((0, N_FEATURES))
