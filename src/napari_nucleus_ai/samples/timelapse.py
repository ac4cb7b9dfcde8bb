"""Synthetic Hoechst (nuclear-stain) time-lapse of a virus infection, with ground truth.

The simulator gives the demo, the tests and the benchmarks a live-cell movie whose
answer is known: which nucleus is which in every frame, who divided, who left
the field, who is infected and from when, and who lyses and when.

Documented phenotypes (modelled on Andriasyan et al., iScience 2021, adenovirus
and herpesvirus in Hoechst-stained live cells):

- **Uninfected** nuclei are ellipses of radius ~9 px (``pixel_size_um=0.65``,
  ~12 um diameter) with smooth chromatin texture; they crawl (random walk with
  persistence), push each other apart, and divide (the mother's last frame is
  condensed and bright, two smaller daughters appear beside it and grow back).
- **Infected** nuclei (from an onset frame ``t_on``) progressively (phenotype
  strength ``s`` from 0 to 1 over ``ramp`` frames) *enlarge* (radius up to
  +45 %), show *chromatin margination* (a bright rim at the envelope and a dimmer
  interior) and *replication compartments* (2-4 growing dim blobs inside).
  Infected cells do not divide.
- **Lytic** infected nuclei progress faster (shorter ramp, larger swelling; the
  early signature the lytic predictor may learn), then in their last
  ``SWELL_FRAMES`` frames *swell* fast, dim and lose their outline, and *burst*:
  one frame of small scattered debris, then nothing. Non-lytic infected nuclei
  keep their phenotype to the end of the movie.
- Acquisition: Gaussian PSF, Poisson shot noise plus Gaussian read noise,
  exponential *photobleaching* and a slow random *stage drift*; nuclei enter and
  leave the field of view.

Ground truth
------------
``truth`` has one row per nucleus and frame in which the nucleus has pixels
inside the field: ``cell_id, t, y, x`` (centroid in image pixels of that frame's
label), ``area_px``, ``infected`` (the cell is infected and ``t >= t_on``),
``phenotype`` (``s`` in 0..1), ``lytic``, ``swelling``. ``cells`` has one row
per cell: ``cell_id, parent_id`` (0 = none), ``infected, t_on, ramp, lytic,
t_lysis`` (the burst frame, -1 if none), ``t_start, t_end`` (first/last frame
alive in the specimen) and ``fate`` in ``{"division", "lysis", "end"}``.
``labels[t]`` holds ``cell_id`` of each nucleus (0 = background); ``drift[t]`` is
the stage offset (y, x pixels) added to every nucleus in frame ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SWELL_FRAMES = 3
FATES = ("division", "lysis", "end")


@dataclass
class TimeLapse:
    """A simulated nuclear-stain time-lapse and its ground truth."""

    image: np.ndarray  # (T, Y, X) uint16
    labels: np.ndarray  # (T, Y, X) ground-truth cell ids
    truth: pd.DataFrame  # one row per nucleus and frame
    cells: pd.DataFrame  # one row per cell
    pixel_size_um: float = 0.65
    frame_interval_h: float = 0.5
    params: dict = field(default_factory=dict)
    drift: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (T, 2) stage y, x px

    @property
    def scale(self) -> tuple[float, float, float]:
        """Layer scale for (T, Y, X): frames, then um per pixel."""
        return (1.0, self.pixel_size_um, self.pixel_size_um)

    def true_links(self) -> pd.DataFrame:
        """Ground-truth links between consecutive frames: ``cell_a, t, cell_b`` (at ``t + 1``).

        A cell visible in ``t`` and ``t + 1`` links to itself; a mother visible
        in its last frame links to each daughter visible in the next frame.
        """
        present = set(zip(self.truth["cell_id"], self.truth["t"], strict=True))
        rows = [(c, t, c) for c, t in present if (c, t + 1) in present]
        for cell in self.cells.itertuples():
            p0, c0 = (cell.parent_id, cell.t_start - 1), (cell.cell_id, cell.t_start)
            if cell.parent_id and p0 in present and c0 in present:
                rows.append((cell.parent_id, cell.t_start - 1, cell.cell_id))
        return pd.DataFrame(rows, columns=["cell_a", "t", "cell_b"]).sort_values(
            ["t", "cell_a", "cell_b"], ignore_index=True
        )


@dataclass
class _Cell:
    cell_id: int
    parent_id: int
    y: float
    x: float
    r0: float
    aspect: float
    angle: float
    bright: float
    t_start: int
    infected: bool = False
    t_on: int = -1
    ramp: float = 1.0
    gain: float = 0.0  # radius increase at full phenotype
    lytic: bool = False
    t_lysis: int = -1
    t_div: int = -1
    t_end: int = -1
    fate: str = "end"
    vy: float = 0.0
    vx: float = 0.0
    blobs: np.ndarray | None = None  # replication compartments: (k, 3) = dy, dx, size (unit disc)

    def phenotype(self, t: int) -> float:
        if not self.infected or t < self.t_on:
            return 0.0
        return float(min(1.0, (t - self.t_on + 1) / self.ramp))

    def swelling(self, t: int) -> float:
        """0 before the swell; 1/SWELL_FRAMES .. 1 over the frames before the burst."""
        if not self.lytic or t < self.t_lysis - SWELL_FRAMES:
            return 0.0
        return float(min(1.0, (t - (self.t_lysis - SWELL_FRAMES) + 1) / SWELL_FRAMES))

    def radius(self, t: int) -> float:
        grow = min(1.0, (t - self.t_start + 1) / 8.0) if self.parent_id else 1.0
        r = self.r0 * (0.75 + 0.25 * grow)
        r *= 1.0 + self.gain * self.phenotype(t)
        return r * (1.0 + 0.3 * self.swelling(t))


def _new_cell(rng, cid, parent, y, x, t, p, r0=None) -> _Cell:
    return _Cell(
        cell_id=cid,
        parent_id=parent,
        y=y,
        x=x,
        r0=float(rng.normal(p["radius_px"], 0.1 * p["radius_px"])) if r0 is None else r0,
        aspect=float(rng.uniform(0.75, 1.0)),
        angle=float(rng.uniform(0, np.pi)),
        bright=float(rng.normal(1.0, 0.12)),
        t_start=t,
        vy=float(rng.normal(0, 0.3)),
        vx=float(rng.normal(0, 0.3)),
    )


def _infect(rng, c: _Cell, p: dict) -> None:
    n = p["n_frames"]
    c.infected = True
    c.t_on = int(rng.integers(0, max(1, int(0.35 * n))))
    c.lytic = bool(rng.random() < p["lytic_fraction"])
    if c.lytic:
        # faster, stronger progression; lysis some hours after the full phenotype
        c.ramp = float(rng.uniform(5, 10))
        c.gain = float(rng.uniform(0.35, 0.5))
        c.t_lysis = int(c.t_on + c.ramp + rng.uniform(6, 16) + SWELL_FRAMES)
    else:
        c.ramp = float(rng.uniform(10, 20))
        c.gain = float(rng.uniform(0.2, 0.4))
    k = int(rng.integers(2, 5))
    ang = rng.uniform(0, 2 * np.pi, k)
    rad = rng.uniform(0.0, 0.45, k)
    c.blobs = np.stack([rad * np.sin(ang), rad * np.cos(ang), rng.uniform(0.18, 0.32, k)], 1)


def _render(
    c: _Cell, t: int, rng, canvas: np.ndarray, lab: np.ndarray, oy: float, ox: float
) -> None:
    """Add the nucleus of ``c`` at frame ``t`` to ``canvas``/``lab`` (image offset oy, ox)."""
    r = c.radius(t)
    sw = c.swelling(t)
    s = c.phenotype(t)
    cy, cx = c.y + oy, c.x + ox
    h = int(np.ceil(r * 1.3)) + 3
    y0, y1 = int(np.floor(cy)) - h, int(np.floor(cy)) + h + 1
    x0, x1 = int(np.floor(cx)) - h, int(np.floor(cx)) + h + 1
    Y, X = canvas.shape
    if y1 <= 0 or x1 <= 0 or y0 >= Y or x0 >= X:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(c.angle), np.sin(c.angle)
    u = (dy * ca + dx * sa) / r
    v = (-dy * sa + dx * ca) / (r * c.aspect)
    rho = np.sqrt(u * u + v * v)
    if sw > 0:  # outline breaks up while swelling
        theta = np.arctan2(v, u)
        rho = rho * (1.0 + 0.12 * sw * np.sin(5 * theta + c.angle * 7))
    inside = rho < 1.0
    edge = 1.0 / (1.0 + np.exp((rho - 1.0) * 12.0))
    tex = 1.0 + 0.18 * _smooth_noise(rng, yy.shape)
    prof = edge * tex
    if s > 0:
        prof *= 1.0 - 0.45 * s * np.clip(1.0 - rho**2, 0, 1)  # dimmer interior
        prof += 0.7 * s * np.exp(-(((rho - 0.88) / 0.1) ** 2))  # bright rim at the envelope
        for by, bx, bs in c.blobs:
            d2 = (u - by) ** 2 + (v - bx) ** 2
            prof *= 1.0 - 0.65 * s * np.exp(-d2 / (2 * (bs * (0.5 + 0.5 * s)) ** 2))
    if t == c.t_div:  # condensed, bright chromatin just before division
        prof = edge * 1.8 * tex
    bright = c.bright * (1.0 - 0.55 * sw)
    sy = slice(max(y0, 0), min(y1, Y))
    sx = slice(max(x0, 0), min(x1, X))
    py = slice(sy.start - y0, sy.stop - y0)
    px = slice(sx.start - x0, sx.stop - x0)
    canvas[sy, sx] += bright * prof[py, px]
    lab[sy, sx][inside[py, px]] = c.cell_id


def _render_debris(c: _Cell, rng, canvas: np.ndarray, oy: float, ox: float) -> None:
    """The burst: a few small faint fragments scattered around the old nucleus."""
    r = c.radius(c.t_lysis - 1)
    Y, X = canvas.shape
    for _ in range(int(rng.integers(4, 9))):
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 1.4 * r)
        fy, fx = c.y + oy + d * np.sin(a), c.x + ox + d * np.cos(a)
        iy, ix = int(round(fy)), int(round(fx))
        if 1 <= iy < Y - 2 and 1 <= ix < X - 2:
            canvas[iy - 1 : iy + 2, ix - 1 : ix + 2] += 0.35 * c.bright


def _smooth_noise(rng, shape) -> np.ndarray:
    from scipy.ndimage import zoom

    coarse = rng.standard_normal((shape[0] // 3 + 2, shape[1] // 3 + 2)).astype(np.float32)
    fine = zoom(coarse, 3, order=1)
    return fine[: shape[0], : shape[1]]


def simulate_timelapse(
    n_frames: int = 48,
    shape: tuple[int, int] = (256, 256),
    density: float = 4.5e-4,
    *,
    pixel_size_um: float = 0.65,
    frame_interval_h: float = 0.5,
    radius_px: float = 9.0,
    infected_fraction: float = 0.5,
    lytic_fraction: float = 0.5,
    division_rate: float = 0.02,
    speed_px: float = 0.7,
    drift_px: float = 0.6,
    photons: float = 300.0,
    read_noise: float = 4.0,
    bleach_per_frame: float = 0.006,
    seed: int = 0,
    progress=None,
) -> TimeLapse:
    """Simulate a Hoechst time-lapse of a virus infection with ground truth.

    Parameters
    ----------
    n_frames, shape : int, (int, int)
        Frames and frame size (pixels).
    density : float
        Nuclei per pixel**2 at the start (4.5e-4: ~30 in 256 x 256).
    pixel_size_um, frame_interval_h : float
        Physical calibration recorded in the result.
    radius_px : float
        Mean radius of an uninfected nucleus.
    infected_fraction, lytic_fraction : float
        Share of the starting cells that get infected, and of those that lyse.
    division_rate : float
        Chance per frame that an uninfected cell divides.
    speed_px, drift_px : float
        Random-walk step of cells and of the stage (pixels per frame).
    photons, read_noise : float
        Peak photon count of a nucleus (shot noise) and camera read noise (counts).
    bleach_per_frame : float
        Fractional intensity lost per frame to photobleaching.
    seed : int
        Everything is reproducible from it.
    progress : callable, optional
        Called with ``(done, total)`` after each frame.

    Returns
    -------
    TimeLapse
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    T, (Y, X) = int(n_frames), (int(shape[0]), int(shape[1]))
    p = {k: v for k, v in locals().items() if isinstance(v, (int, float, tuple))}
    p.update(n_frames=T, radius_px=radius_px, lytic_fraction=lytic_fraction)
    margin = 4 * radius_px
    n0 = max(1, int(round(density * (Y + 2 * margin) * (X + 2 * margin))))
    cells: list[_Cell] = []
    # place starting cells on a jittered grid so they don't overlap
    side = int(np.ceil(np.sqrt(n0)))
    gy = np.linspace(-margin, Y + margin, side, endpoint=False) + (Y + 2 * margin) / side / 2
    gx = np.linspace(-margin, X + margin, side, endpoint=False) + (X + 2 * margin) / side / 2
    spots = [(a, b) for a in gy for b in gx]
    rng.shuffle(spots)
    jitter = 0.25 * (Y + 2 * margin) / side
    for i, (a, b) in enumerate(spots[:n0]):
        c = _new_cell(
            rng, i + 1, 0, a + rng.uniform(-jitter, jitter), b + rng.uniform(-jitter, jitter), 0, p
        )
        if rng.random() < infected_fraction:
            _infect(rng, c, p)
        cells.append(c)
    next_id = len(cells) + 1
    alive = list(cells)
    drift = np.zeros(2)
    drift_v = rng.normal(0, drift_px, 2)
    image = np.empty((T, Y, X), np.uint16)
    ldtype = np.uint16 if n0 * 8 < 60000 else np.uint32
    labels = np.zeros((T, Y, X), ldtype)
    truth_rows = []
    debris: list[_Cell] = []
    stage = np.zeros((T, 2))
    for t in range(T):
        canvas = np.zeros((Y, X), np.float32)
        lab = labels[t]
        stage[t] = drift
        oy, ox = drift
        for c in alive:
            _render(c, t, rng, canvas, lab, oy, ox)
        for c in debris:
            _render_debris(c, rng, canvas, oy, ox)
        bleach = (1.0 - bleach_per_frame) ** t
        signal = gaussian_filter(canvas, 1.0) * bleach * photons
        frame = rng.poisson(np.maximum(signal, 0) + 2.0) + rng.normal(100.0, read_noise, (Y, X))
        image[t] = np.clip(frame, 0, 65535).astype(np.uint16)
        truth_rows += _truth_for_frame(lab, t, {c.cell_id: c for c in alive})
        # --- advance the specimen to t + 1 ---
        debris = [c for c in alive if c.lytic and c.t_lysis == t + 1]
        nxt = []
        for c in alive:
            if c.lytic and c.t_lysis == t + 1:
                c.t_end, c.fate = t, "lysis"
                continue
            if c.t_div == t:
                c.t_end, c.fate = t, "division"
                a = rng.uniform(0, np.pi)
                d = 0.9 * c.radius(t)
                for sgn in (1, -1):
                    dy, dx = sgn * d * np.sin(a), sgn * d * np.cos(a)
                    child = _new_cell(
                        rng, next_id, c.cell_id, c.y + dy, c.x + dx, t + 1, p, r0=c.r0
                    )
                    child.vy, child.vx = sgn * 0.8 * np.sin(a), sgn * 0.8 * np.cos(a)
                    next_id += 1
                    cells.append(child)
                    nxt.append(child)
                continue
            nxt.append(c)
        alive = nxt
        for c in alive:
            can_divide = not c.infected and c.t_div < 0 and t + 2 < T and t > c.t_start + 6
            if can_divide and rng.random() < division_rate:
                c.t_div = t + 1
            c.vy = 0.7 * c.vy + rng.normal(0, speed_px * 0.7)
            c.vx = 0.7 * c.vx + rng.normal(0, speed_px * 0.7)
            c.y += c.vy
            c.x += c.vx
        _repel(alive, t + 1)
        drift_v = 0.85 * drift_v + rng.normal(0, drift_px * 0.5, 2)
        drift = drift + drift_v
        if progress is not None:
            progress(t + 1, T)
    for c in alive:
        c.t_end = T - 1
    cells_df = pd.DataFrame(
        {
            "cell_id": [c.cell_id for c in cells],
            "parent_id": [c.parent_id for c in cells],
            "infected": [c.infected for c in cells],
            "t_on": [c.t_on for c in cells],
            "ramp": [c.ramp if c.infected else np.nan for c in cells],
            "lytic": [c.lytic for c in cells],
            "t_lysis": [c.t_lysis if c.fate == "lysis" else -1 for c in cells],
            "t_start": [c.t_start for c in cells],
            "t_end": [c.t_end for c in cells],
            "fate": [c.fate for c in cells],
        }
    )
    truth = pd.DataFrame(
        truth_rows,
        columns=["cell_id", "t", "y", "x", "area_px", "infected", "phenotype", "lytic", "swelling"],
    )
    params = dict(
        n_frames=T, shape=(Y, X), density=density, radius_px=radius_px,
        infected_fraction=infected_fraction, lytic_fraction=lytic_fraction,
        division_rate=division_rate, speed_px=speed_px, drift_px=drift_px, photons=photons,
        read_noise=read_noise, bleach_per_frame=bleach_per_frame, seed=seed,
    )  # fmt: skip
    return TimeLapse(image, labels, truth, cells_df, pixel_size_um, frame_interval_h, params, stage)


def _repel(alive: list[_Cell], t: int) -> None:
    """Push overlapping nuclei apart (a few relaxation steps)."""
    if len(alive) < 2:
        return
    pos = np.array([[c.y, c.x] for c in alive])
    rad = np.array([c.radius(t) for c in alive])
    for _ in range(4):
        d = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((d**2).sum(-1)) + np.eye(len(alive)) * 1e9
        need = rad[:, None] + rad[None, :] + 3.0
        over = np.clip(need - dist, 0, None)
        if not over.any():
            break
        push = (d / dist[..., None] * (0.5 * over)[..., None]).sum(1)
        pos += push
    for c, (y, x) in zip(alive, pos, strict=True):
        c.y, c.x = float(y), float(x)


def _truth_for_frame(lab: np.ndarray, t: int, by_id: dict) -> list:
    from scipy.ndimage import center_of_mass

    ids = np.unique(lab)
    ids = ids[ids > 0]
    if not ids.size:
        return []
    counts = np.bincount(lab.ravel(), minlength=int(ids.max()) + 1)
    coms = center_of_mass(np.ones_like(lab, dtype=np.uint8), lab, ids)
    rows = []
    for i, (y, x) in zip(ids, coms, strict=True):
        c = by_id[int(i)]
        rows.append(
            (int(i), t, float(y), float(x), int(counts[i]), bool(c.infected and t >= c.t_on),
             c.phenotype(t), c.lytic, c.swelling(t))
        )  # fmt: skip
    return rows


def sample_layers(n_frames: int = 48, shape=(256, 256), seed: int = 0) -> list:
    """The synthetic time-lapse as napari layer data (image + ground-truth labels)."""
    tl = simulate_timelapse(n_frames, shape, seed=seed)
    meta = {
        "frame_interval_h": tl.frame_interval_h,
        "pixel_size_um": tl.pixel_size_um,
        "source": "napari-nucleus-ai synthetic Hoechst infection time-lapse",
        "simulation": tl.params,
    }
    common = {"scale": tl.scale, "axis_labels": ("t", "y", "x"), "units": ("", "um", "um")}
    return [
        (tl.image, {"name": "Hoechst time-lapse (synthetic)", "colormap": "gray", "metadata": meta, **common}, "image"),
        (tl.labels, {"name": "ground truth nuclei", "visible": False, "opacity": 0.4, **common}, "labels"),
    ]  # fmt: skip


def make_sample():
    """npe2 sample-data entry point: a 48-frame 256 x 256 infection time-lapse."""
    return sample_layers()
