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
    dist = _label_min(r, lab, n) - np.sqrt(area) * 0.25  # big parts first
    nucleus = lab == index[int(np.argmin(dist))]
    for _ in range(3):  # lobes: parts close to the nucleus found so far (chains of lobes)
        gap = ndi.distance_transform_edt(~nucleus) / h
        near = _label_min(gap, lab, n)
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
    fg = _fill_holes(dens > t) | nucleus
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
    return _fill_holes(cell | nucleus)


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


def describe_cells(rgb: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Descriptors ``(N, F)`` float32 of a batch of crops ``(N, H, W, 3)`` in [0, 1].

    The same features as :func:`describe_cell` on each crop (within float rounding: the
    masked means are summed in another order), computed over the whole batch at once
    where the measurement allows it: optical density, colour statistics, difference of
    Gaussians, the Gabor bank (batched FFTs in torch when it is loaded, numpy otherwise),
    radial profiles and histograms. The segmentation (nucleus and cell masks, their shapes
    and lobes) and scikit-image's local binary patterns run per crop (``morph`` runs its
    frozen backbone on another thread meanwhile). Crops go through in chunks of ``chunk``.
    """
    rgb = np.asarray(rgb, np.float32)
    if not len(rgb):
        return np.zeros((0, N_FEATURES), np.float32)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"describe_cells needs (N, H, W, 3) crops, not {rgb.shape}")
    out = [_describe_batch(rgb[i : i + chunk]) for i in range(0, len(rgb), chunk)]
    return np.concatenate(out).astype(np.float32)


# ------------------------------------------------------------------ the batched descriptor
def _masked_stats(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Mean and (population) std of ``v[i][m[i]]`` per crop ``(N, 2)``; 0, 0 where empty."""
    v = v.reshape(len(v), -1).astype(np.float64)
    w = m.reshape(len(m), -1).astype(np.float64, copy=False)  # bool, or 0 / 1 float64
    n = w.sum(1)
    safe = np.maximum(n, 1.0)
    mean = (v * w).sum(1) / safe
    var = (((v - mean[:, None]) ** 2) * w).sum(1) / safe
    out = np.stack([mean, np.sqrt(var)], 1)
    out[n == 0] = 0.0
    return out


def _masked_mean(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Mean of ``v[i][m[i]]`` per crop ``(N,)``; 0 where the mask is empty."""
    v = v.reshape(len(v), -1).astype(np.float64)
    w = m.reshape(len(m), -1).astype(np.float64, copy=False)
    n = w.sum(1)
    return np.where(n > 0, (v * w).sum(1) / np.maximum(n, 1.0), 0.0)


def _segment_one(od: np.ndarray):
    """Per-crop part: masks, shape / lobe features, nucleus centre, nucleus detail."""
    from scipy import ndimage as ndi

    h, w = od.shape[:2]
    nuc = nucleus_mask(od)
    cell = cell_mask(od, nuc)
    cyto = cell & ~nuc
    feats = _region_shape(nuc, h) + _lobes(nuc, h) + _region_shape(cell, h)[:5]
    feats.append(float(nuc.sum()) / max(float(cell.sum()), 1.0))
    cy, cx = ndi.center_of_mass(nuc) if nuc.any() else ((h - 1) / 2, (w - 1) / 2)
    feats.append(float(np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2)) / h)
    ring = ndi.binary_dilation(cell, iterations=max(1, int(0.06 * h))) & ~cell
    detail = _nucleus_detail(od, nuc, cyto, (cy, cx), h)
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


def _gabor_batch(grey: np.ndarray, masks: tuple, h: int, chunk: int = 2) -> np.ndarray:
    """:func:`_gabor_energy` over a batch ``(N, 4 * len(masks) * 2)``: the mean Gabor modulus
    inside each mask (4 scales x 8 orientations) as mean over orientations and relative
    spread. Single-precision FFTs (torch's when it is loaded, numpy's otherwise): the
    features agree with the double-precision loop to ~1e-6 relative."""
    import sys

    n, hh, ww = grey.shape
    nf = 32
    bank = _gabor_bank(hh, ww, h).astype(np.float32)
    flat = [m.reshape(n, -1).astype(np.float32) for m in masks]
    counts = [f.sum(1, dtype=np.float64) for f in flat]
    wsum = np.ascontiguousarray(np.stack(flat, -1))  # (N, HW, n_masks)
    sums = np.zeros((n, nf, len(masks)))
    centred = grey.astype(np.float64) - grey.mean((1, 2), dtype=np.float64)[:, None, None]
    if "torch" in sys.modules:  # batched FFTs on torch's threads when torch is loaded
        import torch

        spec = torch.fft.fft2(torch.from_numpy(centred)).to(torch.complex64).numpy()
        ws = torch.from_numpy(wsum)
        # buffers reused across chunks: allocating these ~20 MB arrays anew for every chunk
        # (page faults) cost as much as the arithmetic
        prod = torch.empty((chunk, nf, hh, ww), dtype=torch.complex64)
        z = torch.empty_like(prod)
        mod = torch.empty((chunk, nf, hh, ww), dtype=torch.float32)
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            # numpy's complex x real product and modulus are vectorised (torch's strided ones
            # took several times as long); torch does the FFTs
            np.multiply(spec[i : i + k, None], bank, out=prod[:k].numpy())
            torch.fft.ifft2(prod[:k], out=z[:k])
            np.abs(z[:k].numpy(), out=mod[:k].numpy())
            sums[i : i + k] = torch.bmm(mod[:k].reshape(k, nf, -1), ws[i : i + k])
    else:
        spec = np.fft.fft2(centred).astype(np.complex64)
        for i in range(0, n, chunk):
            resp = np.abs(np.fft.ifft2(spec[i : i + chunk, None] * bank[None]))
            sums[i : i + chunk] = resp.reshape(resp.shape[0], nf, -1) @ wsum[i : i + chunk]
    out = np.zeros((n, 4, len(masks), 2))
    for j, c in enumerate(counts):
        per = sums[:, :, j].reshape(n, 4, 8) / np.maximum(c, 1.0)[:, None, None]
        mu = per.mean(-1)
        out[:, :, j, 0] = mu
        out[:, :, j, 1] = per.std(-1) / np.maximum(mu, 1e-6)
        out[c < 2, :, j] = 0.0
    return out.reshape(n, -1)


def _lbp_batch(grey: np.ndarray, masks: tuple, radii: tuple = (1.0, 2.0)) -> np.ndarray:
    """:func:`_lbp_hist` over a batch, for each radius and mask in turn: scikit-image's
    ``local_binary_pattern(..., "uniform")`` of each crop's 8-bit grey image (stretched
    once for all radii), histograms counted for the whole batch ``(N, R * M * (P + 2))``."""
    from skimage.feature import local_binary_pattern

    n = len(grey)
    lo, hi = np.percentile(grey.reshape(n, -1), [1.0, 99.5], axis=1)
    scale = np.maximum(hi - lo, 1e-6)
    g8 = np.clip((grey - lo[:, None, None]) / scale[:, None, None] * 255, 0, 255)
    g8 = g8.astype(np.uint8)
    nb = _LBP_P + 2
    offset = nb * np.arange(n)[:, None]
    use = []
    for m in masks:
        m = m.reshape(n, -1)
        use.append(np.where((m.sum(1) >= 4)[:, None], m, True))
    out = []
    for radius in radii:
        codes = np.stack([local_binary_pattern(g, _LBP_P, radius, method="uniform") for g in g8])
        idx = codes.reshape(n, -1).astype(np.intp) + offset
        for u in use:
            hist = np.bincount(idx[u], minlength=n * nb).reshape(n, nb).astype(float)
            out.append(hist / np.maximum(hist.sum(1, keepdims=True), 1.0))
    return np.concatenate(out, 1)


def _describe_batch(rgb: np.ndarray) -> np.ndarray:
    """:func:`describe_cell` of every crop of ``rgb`` ``(N, H, W, 3)``, batched."""
    from scipy import ndimage as ndi

    n, h, w = rgb.shape[:3]
    x = np.clip(rgb, 0.0, 1.0)
    white = np.maximum(np.percentile(x.reshape(n, -1, 3), 99.0, axis=1), 0.2)
    od = -np.log(np.clip(x / white[:, None, None, :], 1e-3, 1.0))
    seg = [_segment_one(o) for o in od]  # (2 threads here measured slower beside the backbone)
    nuc = np.stack([s[0] for s in seg])
    cyto = np.stack([s[1] for s in seg])
    ring = np.stack([s[2] for s in seg])
    cols: list[np.ndarray] = [np.asarray([s[3] for s in seg], np.float64)]
    # colour: optical density and chromaticity in nucleus, cytoplasm and surroundings
    tot = od.sum(-1) + 1e-3
    chroma = od / tot[..., None]
    # the masks as 0 / 1 float64 weights, converted once for every statistic below
    wnuc, wcyto, wring = (m.reshape(n, -1).astype(np.float64) for m in (nuc, cyto, ring))
    for m in (wnuc, wcyto, wring):
        cols += [_masked_stats(od[..., c], m) for c in range(3)]
        cols += [_masked_stats(chroma[..., c], m) for c in (0, 2)]
    # granularity: difference-of-Gaussians energy
    grey = od.mean(-1)
    for s in (0.005, 0.01, 0.02):
        s1, s2 = s * h + 0.3, 2 * s * h + 0.6
        dog = np.abs(
            ndi.gaussian_filter(grey, (0, s1, s1)) - ndi.gaussian_filter(grey, (0, s2, s2))
        )
        cols += [_masked_mean(dog, m)[:, None] for m in (wnuc, wcyto)]
    cols.append(np.asarray([s[5] for s in seg], np.float64))
    cols.append(_gabor_batch(grey, (nuc, cyto), h))
    red = od[..., 1] - od[..., 0]
    has = cyto.reshape(n, -1).any(1)
    cols.append(_masked_stats(red, wcyto))
    cols.append(np.where(has, _masked_mean(red > 0.25, wcyto), 0.0)[:, None])
    cols.append(_lbp_batch(grey, (nuc, cyto)))
    # radial profiles around the nucleus centre, up to half the crop side
    cy = np.asarray([s[4][0] for s in seg], np.float64)[:, None, None]
    cx = np.asarray([s[4][1] for s in seg], np.float64)[:, None, None]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy[None] - cy, xx[None] - cx) / h
    ring_idx = np.minimum((r / 0.5 * N_RINGS).astype(int), N_RINGS).reshape(n, -1)
    idx = (ring_idx + (N_RINGS + 1) * np.arange(n)[:, None]).ravel()
    size = n * (N_RINGS + 1)
    counts = np.bincount(idx, minlength=size).reshape(n, -1)[:, :N_RINGS]
    for c in range(3):
        sc = np.bincount(idx, od[..., c].ravel(), minlength=size).reshape(n, -1)[:, :N_RINGS]
        cols.append(sc / np.maximum(counts, 1))
    # centre-weighted optical-density histograms
    wgt = np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / h**2) / (2 * 0.2**2))
    for c in range(3):
        # np.histogram's bins of width 2 / N_HIST over [0, 2) by one product: with N_HIST / 2
        # a power of two the product and the bin edges are exact in floating point
        v = np.clip(od[..., c], 0, 1.999).reshape(n, -1)
        b = (v * (N_HIST / 2)).astype(np.intp)
        b = (b + N_HIST * np.arange(n)[:, None]).ravel()
        hist = np.bincount(b, np.broadcast_to(wgt.ravel(), v.shape).ravel(), n * N_HIST)
        cols.append(hist.reshape(n, N_HIST) / wgt.sum())
    return np.concatenate(cols, 1).astype(np.float32)
