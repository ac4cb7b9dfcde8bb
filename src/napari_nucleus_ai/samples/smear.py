"""Synthetic Wright/Giemsa-stained peripheral blood smear fields with ground truth.

How it is drawn (deterministic for a given ``seed``):

* Brightfield by Beer-Lambert: every object adds optical density (OD, per R/G/B) to an
  OD image; the field is ``background * 10**-OD``, blurred like a 100x objective
  (Gaussian, 0.07 um), with gentle vignetting and camera noise. Overlapping cells
  therefore darken as they do under the microscope.
* Red cells: biconcave discs 6.8-8.2 um across, slightly elliptical, pink (eosin)
  with a central pallor; they may overlap one another but not the white cells.
* Platelets: 1.5-3 um purple, irregular, granular.
* White cells, with class-typical nuclei (purple, clumped chromatin texture) and
  cytoplasm (class colour, granules):

  ==============  =========  =======================================================
  class           diameter   nucleus / cytoplasm
  ==============  =========  =======================================================
  neutrophil      11-13 um   3-5 lobes joined by thin strands (segmented); lilac
                             fine granules
  band            11-13 um   unsegmented C/U-shaped band; lilac fine granules
  eosinophil      12-14 um   2 lobes (bilobed); coarse orange-red granules
  basophil        10-12 um   lobed nucleus hidden by coarse dark-purple granules
  lymphocyte      8-10 um    round, dense, slightly eccentric; thin sky-blue rim
  monocyte        14-18 um   kidney/horseshoe-shaped, lacier chromatin; grey-blue
                             cytoplasm with vacuoles
  blast           13-16 um   large round/oval nucleus, fine chromatin, 1-3 nucleoli;
                             narrow deep-blue cytoplasm
  ==============  =========  =======================================================

Ground truth: a label image of the white cells (whole cell, ids 1..n), a label image of
their nuclei (same ids) and a cell table (:mod:`napari_nucleus_ai.cells` contract, in
micrometres) with a ``class`` and ``nucleus_shape`` column. Sizes follow haematology
atlases; colours were matched by eye to the PBC (CellaVision) crops in the shared data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WBC_CLASSES = ("neutrophil", "band", "eosinophil", "basophil", "lymphocyte", "monocyte", "blast")
NUCLEUS_SHAPE = {
    "neutrophil": "segmented",
    "band": "band",
    "eosinophil": "bilobed",
    "basophil": "lobed, obscured",
    "lymphocyte": "round",
    "monocyte": "kidney",
    "blast": "blast-like",
}
DEFAULT_PIXEL_SIZE_UM = 0.1  # CellaVision-like 100x field; BCCD fields are ~0.08 um/px
BACKGROUND = np.array([240.0, 230.0, 222.0])  # plasma-free glass under the lamp

# optical densities (R, G, B) at full thickness
OD_RBC = np.array([0.05, 0.17, 0.11])
OD_NUCLEUS = np.array([0.62, 0.90, 0.36])
OD_PLATELET = np.array([0.30, 0.48, 0.16])
_CELL = {  # diameter range (um), cytoplasm OD, granule OD, granule radius (um), granules per um^2
    "neutrophil": ((11.0, 13.0), (0.05, 0.09, 0.04), (0.22, 0.30, 0.10), 0.12, 1.2),
    "band": ((11.0, 13.0), (0.05, 0.09, 0.04), (0.22, 0.30, 0.10), 0.12, 1.2),
    "eosinophil": ((12.0, 14.0), (0.06, 0.10, 0.08), (0.03, 0.30, 0.36), 0.24, 1.6),
    "basophil": ((10.0, 12.0), (0.10, 0.12, 0.05), (0.75, 0.95, 0.35), 0.32, 1.0),
    "lymphocyte": ((8.0, 10.0), (0.15, 0.09, 0.02), None, 0.0, 0.0),
    "monocyte": ((14.0, 18.0), (0.13, 0.13, 0.05), (0.10, 0.16, 0.05), 0.08, 0.6),
    "blast": ((13.0, 16.0), (0.26, 0.20, 0.05), None, 0.0, 0.0),
}


@dataclass
class SmearSim:
    """A simulated field and its ground truth.

    Attributes
    ----------
    image : ndarray (Y, X, 3) uint8
    cells : ndarray (Y, X) int32 -- white cells, ids 1..n
    nuclei : ndarray (Y, X) int32 -- their nuclei, same ids
    table : pandas.DataFrame -- cell table (micrometres) with ``class``, ``nucleus_shape``
    pixel_size_um : float
    n_rbc, n_platelets : int
    """

    image: np.ndarray
    cells: np.ndarray
    nuclei: np.ndarray
    table: object
    pixel_size_um: float
    n_rbc: int
    n_platelets: int


# -- drawing primitives (all on a local patch around one object) ------------------------------


def _patch(cy, cx, r, shape):
    """Slices of the patch around (cy, cx) with half-size r, and local coordinates (dy, dx)."""
    y0, y1 = max(0, int(cy - r - 2)), min(shape[0], int(cy + r + 3))
    x0, x1 = max(0, int(cx - r - 2)), min(shape[1], int(cx + r + 3))
    if y1 <= y0 or x1 <= x0:
        return None, None, None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), yy - cy, xx - cx


def _soft(d, edge=0.8):
    """1 inside (d < 0), 0 outside, with a smooth edge ``edge`` pixels wide."""
    return 1.0 / (1.0 + np.exp(np.clip(d / max(edge, 1e-3), -30, 30)))


def _ellipse_d(dy, dx, a, b, angle):
    """Approximate signed distance (pixels) to an ellipse with semi-axes a, b."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def _wobbly_d(dy, dx, r, rng, amp=0.04):
    """Signed distance to a slightly irregular circle (low harmonics of the radius)."""
    rho, th = np.hypot(dy, dx), np.arctan2(dy, dx)
    rr = r * (
        1
        + amp * np.sin(2 * th + rng.uniform(0, 6.3))
        + amp * 0.7 * np.sin(3 * th + rng.uniform(0, 6.3))
    )
    return rho - rr


def _segment_d(dy, dx, p, q):
    """Distance to the segment p-q (points as (y, x))."""
    py, px = p
    vy, vx = q[0] - py, q[1] - px
    t = np.clip(((dy - py) * vy + (dx - px) * vx) / max(vy * vy + vx * vx, 1e-6), 0, 1)
    return np.hypot(dy - py - t * vy, dx - px - t * vx)


def _texture(shape, rng, sigma, amp):
    """Smooth random field in [1-amp, 1+amp] (chromatin clumps, cytoplasm mottling)."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    n /= n.std() + 1e-6
    return 1.0 + amp * np.tanh(n)


def _granules(inside, rng, density, radius_px, shape):
    """Granule density map: random points in ``inside`` (bool), blurred to dots."""
    from scipy.ndimage import gaussian_filter

    ys, xs = np.nonzero(inside)
    n = rng.poisson(density * ys.size) if ys.size else 0
    img = np.zeros(shape, np.float32)
    if n:
        pick = rng.integers(0, ys.size, n)
        np.add.at(img, (ys[pick], xs[pick]), 1.0)
        img = gaussian_filter(img, max(radius_px, 0.5)) * (2 * np.pi * max(radius_px, 0.5) ** 2)
    return np.clip(img, 0, 1.6)


# -- nuclei -----------------------------------------------------------------------------------


def _nucleus(cls, dy, dx, r_cell, rng, um):
    """(nucleus coverage 0..1, nucleolus mask 0..1) on the patch, class-typical shape."""
    edge = 0.6
    if cls == "lymphocyte":
        off = rng.uniform(0.0, 0.12) * r_cell
        a = rng.uniform(0.78, 0.86) * r_cell
        ang = rng.uniform(0, 2 * np.pi)
        d = _ellipse_d(
            dy - off * np.sin(ang), dx - off * np.cos(ang), a, a * rng.uniform(0.9, 1.0), ang
        )
        return _soft(d, edge), None
    if cls == "blast":
        a = rng.uniform(0.74, 0.82) * r_cell
        ang = rng.uniform(0, np.pi)
        d = _ellipse_d(dy, dx, a, a * rng.uniform(0.85, 1.0), ang)
        nucleoli = np.zeros_like(dy)
        for _ in range(rng.integers(1, 4)):
            rr, th = rng.uniform(0, 0.5) * a, rng.uniform(0, 2 * np.pi)
            nucleoli = np.maximum(
                nucleoli,
                _soft(
                    np.hypot(dy - rr * np.sin(th), dx - rr * np.cos(th))
                    - rng.uniform(0.5, 0.9) / um,
                    0.8,
                ),
            )
        return _soft(d, edge), nucleoli
    if cls == "monocyte":
        a = rng.uniform(0.58, 0.66) * r_cell
        ang = rng.uniform(0, 2 * np.pi)
        d = _ellipse_d(dy, dx, a, a * 0.8, ang)
        # the indent: a circle cutting into one long side -> kidney / horseshoe
        ci = a * rng.uniform(0.85, 1.05)
        cy, cx = ci * np.sin(ang + np.pi / 2), ci * np.cos(ang + np.pi / 2)
        notch = _soft(np.hypot(dy - cy, dx - cx) - a * rng.uniform(0.45, 0.6), edge)
        return _soft(d, edge) * (1 - notch), None
    if cls == "band":
        rb = rng.uniform(0.42, 0.5) * r_cell
        w = rng.uniform(1.3, 1.7) / um
        span = rng.uniform(0.55, 0.75) * 2 * np.pi
        start = rng.uniform(0, 2 * np.pi)
        rho, th = np.hypot(dy, dx), np.arctan2(dy, dx)
        rel = np.mod(th - start, 2 * np.pi)
        beyond = np.where(rel <= span, 0.0, np.minimum(rel - span, 2 * np.pi - rel)) * rb
        d = np.hypot(
            np.abs(rho - rb) - w / 2 * (1 - 0.25 * np.cos(np.pi * np.clip(rel / span, 0, 1))),
            beyond,
        )
        d = np.where((np.abs(rho - rb) < w / 2) & (beyond == 0), -(w / 2 - np.abs(rho - rb)), d)
        return _soft(d, edge), None
    # lobed: neutrophil (3-5 lobes), eosinophil (2), basophil (2-3)
    n_lobes = {"neutrophil": rng.integers(3, 6), "eosinophil": 2, "basophil": rng.integers(2, 4)}[
        cls
    ]
    ring = rng.uniform(0.36, 0.46) * r_cell
    start = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(0.35, 0.5) * 2 * np.pi / max(n_lobes - 1, 1) * (1.6 if n_lobes == 2 else 1.0)
    centres = [
        (ring * np.sin(start + i * step), ring * np.cos(start + i * step)) for i in range(n_lobes)
    ]
    cover = np.zeros_like(dy)
    for i, (ly, lx) in enumerate(centres):
        a = rng.uniform(1.8, 2.2) / um * (1.2 if n_lobes == 2 else 1.0)
        cover = np.maximum(
            cover,
            _soft(
                _ellipse_d(dy - ly, dx - lx, a, a * rng.uniform(0.7, 0.9), rng.uniform(0, np.pi)),
                edge,
            ),
        )
        if i:
            strand = _segment_d(dy, dx, centres[i - 1], (ly, lx)) - 0.22 / um
            cover = np.maximum(cover, _soft(strand, 0.5))
    return cover, None


# -- the field ----------------------------------------------------------------------------------


class _Discs:
    """Placed discs in a bucket grid, so that placing thousands of red cells stays fast."""

    def __init__(self, cell: float):
        self.cell = max(float(cell), 1.0)
        self.grid: dict[tuple[int, int], list[tuple[float, float, float, bool]]] = {}

    def add(self, y: float, x: float, r: float, hard: bool) -> None:
        key = (int(y // self.cell), int(x // self.cell))
        self.grid.setdefault(key, []).append((y, x, r, hard))

    def free(self, y: float, x: float, r: float, overlap: float, hard_only: bool) -> bool:
        """True when (y, x, r) overlaps no hard disc, nor a soft one by more than ``overlap``."""
        reach = int(np.ceil((r + self.cell) / self.cell))
        ky, kx = int(y // self.cell), int(x // self.cell)
        for gy in range(ky - reach, ky + reach + 1):
            for gx in range(kx - reach, kx + reach + 1):
                for yy, xx, rr, hard in self.grid.get((gy, gx), ()):
                    if hard_only and not hard:
                        continue
                    if np.hypot(y - yy, x - xx) < (r + rr) * (1 - (0 if hard else overlap)):
                        return False
        return True


def _place(rng, shape, r, discs, margin, tries=200, overlap=0.0, hard_only=False):
    """A centre for a disc of radius r that ``discs`` has room for, or None."""
    for _ in range(tries):
        cy, cx = rng.uniform(margin, shape[0] - margin), rng.uniform(margin, shape[1] - margin)
        if discs.free(cy, cx, r, overlap, hard_only):
            return cy, cx
    return None


def _draw_wbc(od, cells, nuclei, label, cls, cy, cx, r, rng, um):
    sl, dy, dx = _patch(cy, cx, r * 1.1, od.shape[:2])
    (lo_d, hi_d), cyto, gran, gran_r_um, gran_density = _CELL[cls]
    d_cell = _wobbly_d(dy, dx, r, rng, 0.03)
    cell = _soft(d_cell, 0.8)
    nuc, nucleoli = _nucleus(cls, dy, dx, r, rng, um)
    nuc = nuc * (cell > 0.5)
    tex_sigma, tex_amp = {
        "blast": (0.6, 0.15),
        "monocyte": (1.2, 0.3),
        "lymphocyte": (1.4, 0.35),
    }.get(cls, (1.2, 0.35))
    chromatin = _texture(dy.shape, rng, tex_sigma / (um / 0.1), tex_amp)
    nuc_od = OD_NUCLEUS * (0.75 if cls in ("blast", "monocyte") else 1.0)
    local = cell[..., None] * np.asarray(cyto) * _texture(dy.shape, rng, 2.0, 0.15)[..., None]
    local = local * (1 - nuc[..., None]) + nuc[..., None] * nuc_od * chromatin[..., None]
    if nucleoli is not None:
        local *= 1 - 0.45 * (nucleoli * nuc)[..., None]
    if cls == "monocyte":  # vacuoles: clear spots in the cytoplasm
        for _ in range(rng.integers(2, 7)):
            rr, th = rng.uniform(0.7, 0.92) * r, rng.uniform(0, 2 * np.pi)
            vac = _soft(
                np.hypot(dy - rr * np.sin(th), dx - rr * np.cos(th)) - rng.uniform(0.3, 0.6) / um,
                0.6,
            )
            local *= 1 - 0.7 * (vac * (1 - nuc))[..., None]
    if gran is not None:
        where = (cell > 0.6) if cls == "basophil" else (cell > 0.6) & (nuc < 0.3)
        g = _granules(where, rng, gran_density * um * um, gran_r_um / um, dy.shape)
        local += g[..., None] * np.asarray(gran) * cell[..., None]
    od[sl] += local.astype(np.float32)
    cells[sl][cell > 0.5] = label
    nuclei[sl][(nuc > 0.5) & (cell > 0.5)] = label


def _draw_rbc(od, cy, cx, r, rng):
    sl, dy, dx = _patch(cy, cx, r * 1.15, od.shape[:2])
    if sl is None:
        return
    e = rng.uniform(0.88, 1.0)
    ang = rng.uniform(0, np.pi)
    d = _ellipse_d(dy, dx, r, r * e, ang)
    inside = _soft(d, 0.9)
    rho = np.hypot(dy, dx) / r
    thick = (
        1.0
        - rng.uniform(0.4, 0.6) * np.exp(-((rho / 0.5) ** 2))
        + 0.15 * np.exp(-(((rho - 0.85) / 0.12) ** 2))
    )
    od[sl] += (inside * thick)[..., None].astype(np.float32) * (OD_RBC * rng.uniform(0.85, 1.15))


def _draw_platelet(od, cy, cx, r, rng):
    sl, dy, dx = _patch(cy, cx, r * 1.3, od.shape[:2])
    if sl is None:
        return
    body = _soft(_wobbly_d(dy, dx, r, rng, 0.15), 0.7)
    tex = _texture(dy.shape, rng, 0.8, 0.5)
    od[sl] += (body * tex)[..., None].astype(np.float32) * OD_PLATELET


def _pick_classes(rng, n, classes):
    if isinstance(classes, dict):
        names = list(classes)
        p = np.asarray([float(classes[k]) for k in names])
        return [names[i] for i in rng.choice(len(names), n, p=p / p.sum())]
    names = list(classes)
    # cycle through the classes first so that small fields still show several kinds
    order = [names[i % len(names)] for i in rng.permutation(max(n, len(names)))[:n]]
    return order


def simulate_smear(
    seed: int = 0,
    shape: tuple[int, int] = (480, 640),
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    n_wbc: int = 3,
    classes=WBC_CLASSES,
    rbc_coverage: float = 0.45,
    n_platelets: int | None = None,
    noise: float = 2.0,
    centre_wbc: bool = False,
) -> SmearSim:
    """Simulate one field of a stained peripheral blood smear with ground truth.

    Parameters
    ----------
    seed : int
        Random seed; the same arguments give the same field, byte for byte.
    shape : (int, int)
        Field size in pixels.
    pixel_size_um : float
        Micrometres per pixel (0.1 ~ a 100x oil field; slides are ~0.25).
    n_wbc : int
        Number of white cells (fewer when the field has no room).
    classes : sequence of str or dict
        Classes to draw from (see :data:`WBC_CLASSES`); a dict gives relative frequencies.
        A sequence is cycled so that ``n_wbc >= len(classes)`` shows every class.
    rbc_coverage : float
        Fraction of the field covered by red cells (monolayer ~0.3-0.6).
    n_platelets : int, optional
        Default: about one per 100 um^2 of field divided by 6.
    noise : float
        Camera noise (grey levels, standard deviation).
    centre_wbc : bool
        Put the first white cell in the centre (crops, like CellaVision).
    """
    from scipy.ndimage import gaussian_filter

    from napari_nucleus_ai.cells import measure_cells

    unknown = set(classes) - set(WBC_CLASSES)
    if unknown:
        from napari_nucleus_ai.core.errors import InputError

        raise InputError(
            None, f"unknown white-cell classes {sorted(unknown)}; known: {', '.join(WBC_CLASSES)}"
        )
    rng = np.random.default_rng(seed)
    um = float(pixel_size_um)
    h, w = int(shape[0]), int(shape[1])
    od = np.zeros((h, w, 3), np.float32)
    cells = np.zeros((h, w), np.int32)
    nuclei = np.zeros((h, w), np.int32)
    taken = _Discs(9.0 / um)  # bucket ~ the largest cell diameter
    rows = []
    for i, cls in enumerate(_pick_classes(rng, int(n_wbc), classes)):
        lo_d, hi_d = _CELL[cls][0]
        r = rng.uniform(lo_d, hi_d) / 2 / um
        pos = (h / 2, w / 2) if (centre_wbc and i == 0) else _place(rng, (h, w), r, taken, r + 2)
        if pos is None:
            continue
        label = len(rows) + 1
        _draw_wbc(od, cells, nuclei, label, cls, pos[0], pos[1], r, rng, um)
        taken.add(pos[0], pos[1], r, True)
        rows.append((label, cls))
    # red cells until the coverage is reached (they may overlap each other a little)
    n_rbc, area, target, misses = 0, 0.0, rbc_coverage * h * w, 0
    while area < target and misses < 60:
        r = rng.uniform(6.8, 8.2) / 2 / um
        pos = _place(rng, (h, w), r, taken, -r * 0.6, tries=30, overlap=0.12)
        if pos is None:
            misses += 1
            continue
        _draw_rbc(od, pos[0], pos[1], r, rng)
        taken.add(pos[0], pos[1], r, False)
        n_rbc += 1
        area += np.pi * r * r
    if n_platelets is None:
        n_platelets = int(rng.poisson(h * w * um * um / 2000.0))  # ~1 per 20 red cells
    for _ in range(n_platelets):
        r = rng.uniform(0.75, 1.5) / um
        pos = _place(rng, (h, w), r, taken, 0, tries=30, hard_only=True)
        if pos is not None:
            _draw_platelet(od, pos[0], pos[1], r, rng)
    # optics: blur, vignetting, camera noise
    for c in range(3):
        od[..., c] = gaussian_filter(od[..., c], 0.07 / um)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1.0 - 0.06 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 4
    img = BACKGROUND[None, None, :] * vignette[..., None] * np.power(10.0, -od)
    img += rng.normal(0.0, noise, img.shape)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    table = measure_cells(cells, image, scale=(um, um), unit="um")
    cls_of = dict(rows)
    table["class"] = [cls_of[int(k)] for k in table["label"]]
    table["nucleus_shape"] = [NUCLEUS_SHAPE[c] for c in table["class"]]
    return SmearSim(image, cells, nuclei, table, um, n_rbc, n_platelets)


def simulate_smear_field(
    seed: int = 0,
    shape: tuple[int, int] = (480, 640),
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    n_wbc: int = 3,
    classes=WBC_CLASSES,
    **kwargs,
):
    """``(rgb uint8 image, white-cell labels, cell table with label + class)``.

    A thin wrapper over :func:`simulate_smear` (see it for the parameters); use that one
    when you also want the nucleus labels.
    """
    sim = simulate_smear(
        seed=seed, shape=shape, pixel_size_um=pixel_size_um, n_wbc=n_wbc, classes=classes, **kwargs
    )
    return sim.image, sim.cells, sim.table


def simulate_wbc_crop(
    cls: str, seed: int = 0, size: int = 360, pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM
) -> np.ndarray:
    """One centred white cell of class ``cls`` among red cells, like a CellaVision/PBC crop.

    Returns an ``(size, size, 3)`` uint8 RGB image. Deterministic per ``(cls, seed)``.
    """
    sim = simulate_smear(
        seed=seed * 31 + WBC_CLASSES.index(cls) if cls in WBC_CLASSES else seed,
        shape=(size, size),
        pixel_size_um=pixel_size_um,
        n_wbc=1,
        classes=(cls,),
        centre_wbc=True,
        n_platelets=int(size * size * pixel_size_um**2 / 300.0),
    )
    return sim.image


# -- npe2 sample data -----------------------------------------------------------------------------


def class_colormap(classes=WBC_CLASSES) -> dict:
    """Fixed, colour-blind-friendly colour per class (for label layers)."""
    palette = [
        "#0072b2",
        "#56b4e9",
        "#e69f00",
        "#cc79a7",
        "#009e73",
        "#d55e00",
        "#f0e442",
        "#999999",
    ]
    return {c: palette[i % len(palette)] for i, c in enumerate(classes)}


def smear_field_sample() -> list:
    """npe2 ``sample_data``: a synthetic smear field (seed 0) and its hidden ground truth."""
    from napari_nucleus_ai.cells import to_features

    sim = simulate_smear(seed=0, shape=(960, 1280), n_wbc=7)
    from napari_nucleus_ai.images import napari_units

    scale = (sim.pixel_size_um, sim.pixel_size_um)
    units = napari_units(2)
    meta = {
        "pixel_size_um": list(scale),
        "mpp": sim.pixel_size_um,
        "source": "simulate_smear(seed=0)",
        "synthetic": True,
    }
    colours = class_colormap()
    by_label = {0: "transparent", None: "transparent"}
    by_label.update(
        {
            int(lab): colours[c]
            for lab, c in zip(sim.table["label"], sim.table["class"], strict=True)
        }
    )
    return [
        (
            sim.image,
            {
                "name": "smear field (synthetic)",
                "rgb": True,
                "scale": scale,
                "metadata": meta,
                **units,
            },
            "image",
        ),
        (
            sim.cells,
            {
                "name": "ground truth white cells",
                "scale": scale,
                **units,
                "features": to_features(sim.table),
                "colormap": by_label,
                "opacity": 0.5,
                "visible": False,
                "metadata": {"ground_truth": True, "classes": list(WBC_CLASSES)},
            },
            "labels",
        ),
    ]
