"""Simulated STORM nuclei: chromatin clutches, blinking, precision, frames (Qt-free).

The model (documented in ``docs/localizations.md``):

1. **Nucleus**: an ellipse (``radius_nm``, ``aspect``, random rotation) whose radius is
   modulated by low harmonics (``irregularity``) - smooth for normal nuclei, lobed for
   cancer-like ones.
2. **Clutches** (nucleosome groups, Ricci et al. 2015) are centres of a clustered point
   process inside the nucleus: a share ``heterochromatin`` sits in dense domains
   (Gaussian, ``domain_size_nm``) around ``domains_per_um2`` domain centres, a share
   ``margination`` hugs the envelope within ``rim_nm``, the rest is spread evenly but
   kept out of a central zone of relative radius ``central_exclusion`` (HSV-1
   replication compartments push host chromatin to the periphery).
3. **Nucleosomes**: ``1 + Poisson(nucleosomes_per_clutch - 1)`` per clutch, offset from the
   clutch centre by a Gaussian with sigma ``clutch_size_nm / 4`` per axis (so
   ``clutch_size_nm`` is the diameter holding 86 % of a clutch).
4. **Blinking**: each labelled nucleosome gives a geometric number of localizations
   (mean ``blinks_mean``) in nearby frames; the total is made exactly
   ``n_localizations`` (a share ``background`` of it is uniform non-specific signal).
5. **Photons and precision**: photons ~ log-normal (median ``photons_median``);
   precision = ``psf_factor / sqrt(photons)`` clipped to ``precision_range_nm`` (5-25 nm);
   the measured position is the true one plus Gaussian noise of that precision.
6. Optional **second colour** (``channel "1"``, e.g. RNA Pol II): small clusters placed
   in euchromatin, away from heterochromatin domains. Optional linear ``drift_nm_per_frame``.

Random draws come from separate streams per stage, so two calls with the same seed
that differ only in ``clutch_size_nm`` give the same nucleus, the same clutch centres,
the same counts and frames: the clutch size is the only difference (what a classifier
test needs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class NucleusParams:
    """Parameters of one simulated nucleus (lengths in nm). See the module docstring."""

    radius_nm: float = 5000.0
    aspect: float = 0.8
    irregularity: float = 0.03
    n_localizations: int = 100_000
    clutch_size_nm: float = 35.0
    nucleosomes_per_clutch: float = 6.0
    heterochromatin: float = 0.35
    domain_size_nm: float = 250.0
    domains_per_um2: float = 0.6
    margination: float = 0.08
    rim_nm: float = 250.0
    central_exclusion: float = 0.0
    blinks_mean: float = 3.0
    n_frames: int = 20_000
    photons_median: float = 1500.0
    psf_factor: float = 400.0
    precision_range_nm: tuple = (5.0, 25.0)
    background: float = 0.02
    second_channel_localizations: int = 0
    second_cluster_size_nm: float = 60.0
    drift_nm_per_frame: tuple = (0.0, 0.0)
    center_nm: tuple = None  # (x, y); default: radius + 1 um margin

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # AINU somatic vs pluripotent: differentiated cells have larger, denser clutches
    # and more heterochromatin (Ricci et al. 2015; Gomez-Garcia et al. 2021).
    "somatic": dict(clutch_size_nm=45.0, nucleosomes_per_clutch=9.0, heterochromatin=0.45),
    "pluripotent": dict(
        clutch_size_nm=25.0, nucleosomes_per_clutch=4.0, heterochromatin=0.12, margination=0.03
    ),
    # HSV-1: host chromatin compacts and marginates to the envelope as replication
    # compartments fill the centre.
    "hsv1_infected": dict(
        clutch_size_nm=40.0,
        heterochromatin=0.3,
        margination=0.6,
        central_exclusion=0.55,
        rim_nm=400.0,
    ),
    "mock": dict(clutch_size_nm=35.0, heterochromatin=0.35, margination=0.08),
    # Cancer vs normal: larger, lobed nuclei with coarse, clumped chromatin.
    "cancer": dict(
        radius_nm=6500.0,
        irregularity=0.12,
        heterochromatin=0.55,
        domain_size_nm=450.0,
        domains_per_um2=0.3,
        clutch_size_nm=40.0,
    ),
    "normal": dict(irregularity=0.03, heterochromatin=0.3, clutch_size_nm=35.0),
    "default": {},
}

# Preset pairs for the AINU-style use cases (class A, class B).
USE_CASES = {
    "somatic_vs_pluripotent": ("somatic", "pluripotent"),
    "hsv1_vs_mock": ("hsv1_infected", "mock"),
    "cancer_vs_normal": ("cancer", "normal"),
}


def make_params(preset_or_params="default", **overrides) -> NucleusParams:
    """A :class:`NucleusParams` from a preset name, a dict or params, plus overrides."""
    if isinstance(preset_or_params, NucleusParams):
        base = preset_or_params
    elif isinstance(preset_or_params, dict):
        base = NucleusParams(**preset_or_params)
    else:
        if preset_or_params not in PRESETS:
            raise ValueError(f"unknown preset {preset_or_params!r}; choose from {sorted(PRESETS)}")
        base = NucleusParams(**PRESETS[preset_or_params])
    return replace(base, **overrides) if overrides else base


def _boundary(rng, p: NucleusParams):
    """Radius function r(theta) (nm, in the nucleus frame) and the rotation angle."""
    rot = rng.uniform(0, np.pi)
    k = np.arange(2, 6)
    amp = p.irregularity * rng.normal(size=k.size) / k * 2
    phase = rng.uniform(0, 2 * np.pi, k.size)
    a, b = p.radius_nm, p.radius_nm * p.aspect

    def radius(theta):
        theta = np.asarray(theta)
        ell = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
        mod = 1 + np.sum(
            amp[:, None] * np.cos(k[:, None] * theta.ravel()[None] + phase[:, None]), 0
        )
        return ell * np.clip(mod.reshape(theta.shape), 0.5, 1.5)

    return radius, rot


def _polar(xy, center, rot):
    d = xy - center
    c, s = np.cos(-rot), np.sin(-rot)
    u = d[:, 0] * c - d[:, 1] * s
    v = d[:, 0] * s + d[:, 1] * c
    return np.hypot(u, v), np.arctan2(v, u)


def _inside(xy, center, rot, radius, inner: float = 0.0):
    r, th = _polar(xy, center, rot)
    rb = radius(th)
    return (r <= rb) & (r >= inner * rb)


def _uniform_inside(rng, n, center, rot, radius, p, inner=0.0):
    out = []
    got = 0
    R = p.radius_nm * 1.6
    while got < n:
        cand = center + rng.uniform(-R, R, size=(max(2 * (n - got), 64), 2))
        cand = cand[_inside(cand, center, rot, radius, inner)]
        out.append(cand)
        got += len(cand)
    return np.concatenate(out)[:n]


def outline(center, rot, radius, n: int = 256) -> np.ndarray:
    """Nucleus outline as an (n, 2) array of napari ``(y, x)`` vertices in nm."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius(th)
    u, v = r * np.cos(th), r * np.sin(th)
    c, s = np.cos(rot), np.sin(rot)
    x = center[0] + u * c - v * s
    y = center[1] + u * s + v * c
    return np.stack([y, x], axis=1)


def simulate_nucleus(preset_or_params="default", seed: int = 0, **overrides) -> pd.DataFrame:
    """Simulate the localizations of one nucleus.

    Parameters
    ----------
    preset_or_params : str, dict or NucleusParams
        A name in :data:`PRESETS` (``somatic``, ``pluripotent``, ``hsv1_infected``,
        ``mock``, ``cancer``, ``normal``, ``default``) or parameters.
    seed : int
        Same seed, same nucleus: shape, clutch centres, counts, frames and noise.
    **overrides
        Any :class:`NucleusParams` field, e.g. ``clutch_size_nm=15`` or
        ``n_localizations=50_000``.

    Returns
    -------
    pandas.DataFrame
        ``x_nm, y_nm, frame, photons, precision_nm, channel`` (normalised columns) plus
        ground truth ``clutch`` (-1 for background) and ``emitter``. ``df.attrs`` holds
        ``params``, ``preset``, ``center_nm`` and ``outline_nm`` ((y, x) vertices).
    """
    p = make_params(preset_or_params, **overrides)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    r_shape, r_centres, r_nuc, r_blink, r_noise, r_bg, r_second, r_domains = streams
    center = np.asarray(
        p.center_nm if p.center_nm is not None else (p.radius_nm + 1000.0,) * 2, float
    )
    radius, rot = _boundary(r_shape, p)
    n_total = int(p.n_localizations)
    n_bg = int(round(p.background * n_total))
    n_spec = n_total - n_bg
    n_emitters = max(1, int(round(n_spec / p.blinks_mean)))
    n_clutches = max(1, int(np.ceil(n_emitters / p.nucleosomes_per_clutch * 1.3)))

    # clutch centres: heterochromatin domains, envelope rim, dispersed euchromatin
    area_um2 = np.pi * p.radius_nm**2 * p.aspect / 1e6
    n_dom = max(1, int(round(p.domains_per_um2 * area_um2)))
    domains = _uniform_inside(r_domains, n_dom, center, rot, radius, p, p.central_exclusion)
    kind = r_centres.choice(3, size=n_clutches, p=_shares(p))
    centres = np.empty((n_clutches, 2))
    het = kind == 0
    pick = domains[r_centres.integers(0, n_dom, het.sum())]
    centres[het] = pick + r_centres.normal(0, p.domain_size_nm / 2, (het.sum(), 2))
    rim = kind == 1
    th = r_centres.uniform(0, 2 * np.pi, rim.sum())
    depth = np.abs(r_centres.normal(0, p.rim_nm, rim.sum()))
    rr = np.maximum(radius(th) - depth, 0)
    u, v = rr * np.cos(th), rr * np.sin(th)
    c, s = np.cos(rot), np.sin(rot)
    centres[rim] = center + np.stack([u * c - v * s, u * s + v * c], 1)
    eu = kind == 2
    centres[eu] = _uniform_inside(
        r_centres, int(eu.sum()), center, rot, radius, p, p.central_exclusion
    )

    # nucleosomes (emitters) around clutch centres; offsets scale with the clutch size only
    per = 1 + r_nuc.poisson(max(p.nucleosomes_per_clutch - 1, 0), n_clutches)
    clutch_of = np.repeat(np.arange(n_clutches), per)[:n_emitters]
    offsets = r_nuc.normal(0, 1, (clutch_of.size, 2))
    emit_xy = centres[clutch_of] + offsets * (p.clutch_size_nm / 4)
    n_emitters = clutch_of.size

    # blinking: geometric localizations per emitter, total made exact
    blinks = r_blink.geometric(1 / max(p.blinks_mean, 1.0), n_emitters)
    idx = np.repeat(np.arange(n_emitters), blinks)
    if idx.size > n_spec:
        idx = np.sort(r_blink.choice(idx, n_spec, replace=False))
    elif idx.size < n_spec:
        idx = np.sort(np.concatenate([idx, r_blink.integers(0, n_emitters, n_spec - idx.size)]))
    first = r_blink.integers(1, p.n_frames + 1, n_emitters)
    rank = np.arange(idx.size) - np.searchsorted(idx, idx)  # 0, 1, 2... within an emitter
    gaps = r_blink.geometric(1 / 3.0, idx.size) * (rank > 0)
    frame = first[idx] + _cumsum_by_group(gaps, idx)
    frame = np.minimum(frame, p.n_frames)

    true_xy = emit_xy[idx]
    # non-specific background, uniform over the nucleus bounding box
    R = p.radius_nm * 1.2
    bg_xy = center + r_bg.uniform(-R, R, (n_bg, 2))
    bg_frame = r_bg.integers(1, p.n_frames + 1, n_bg)
    xy = np.concatenate([true_xy, bg_xy])
    frame = np.concatenate([frame, bg_frame]).astype(np.int64)
    clutch = np.concatenate([clutch_of[idx], np.full(n_bg, -1)])
    emitter = np.concatenate([idx, np.full(n_bg, -1)])
    photons = r_noise.lognormal(np.log(p.photons_median), 0.5, n_total)
    lo, hi = p.precision_range_nm
    precision = np.clip(p.psf_factor / np.sqrt(photons), lo, hi)
    xy = xy + r_noise.normal(0, 1, (n_total, 2)) * precision[:, None]
    channel = np.full(n_total, "0", dtype=object)

    if p.second_channel_localizations:
        xy2, f2, ph2, pr2 = _second_colour(r_second, p, center, rot, radius, domains)
        xy = np.concatenate([xy, xy2])
        frame = np.concatenate([frame, f2])
        photons = np.concatenate([photons, ph2])
        precision = np.concatenate([precision, pr2])
        channel = np.concatenate([channel, np.full(len(xy2), "1", dtype=object)])
        clutch = np.concatenate([clutch, np.full(len(xy2), -1)])
        emitter = np.concatenate([emitter, np.full(len(xy2), -1)])
    if any(p.drift_nm_per_frame):
        xy = xy + np.outer(frame, np.asarray(p.drift_nm_per_frame, float))

    order = np.argsort(frame, kind="stable")
    df = pd.DataFrame(
        {
            "x_nm": xy[order, 0],
            "y_nm": xy[order, 1],
            "frame": frame[order],
            "photons": photons[order].astype(np.float32),
            "precision_nm": precision[order].astype(np.float32),
            "channel": channel[order],
            "clutch": clutch[order],
            "emitter": emitter[order],
        }
    )
    df.attrs.update(
        preset=preset_or_params if isinstance(preset_or_params, str) else "custom",
        params=p.to_dict(),
        center_nm=center.tolist(),
        outline_nm=outline(center, rot, radius).tolist(),
        seed=seed,
    )
    return df


def _shares(p: NucleusParams) -> np.ndarray:
    het, rim = max(p.heterochromatin, 0), max(p.margination, 0)
    eu = max(1 - het - rim, 0)
    s = np.array([het, rim, eu], float)
    return s / s.sum()


def _cumsum_by_group(values, groups):
    """Cumulative sum restarting at each new value of sorted ``groups``."""
    cs = np.cumsum(values)
    starts = np.searchsorted(groups, groups)
    return cs - cs[starts] + values[starts]


def _second_colour(rng, p, center, rot, radius, domains):
    n = int(p.second_channel_localizations)
    n_clusters = max(1, n // 40)
    cand = _uniform_inside(rng, n_clusters * 4, center, rot, radius, p, p.central_exclusion)
    d = np.min(np.linalg.norm(cand[:, None] - domains[None], axis=2), axis=1)
    cand = cand[np.argsort(-d)][:n_clusters]  # farthest from heterochromatin first
    which = rng.integers(0, n_clusters, n)
    xy = cand[which] + rng.normal(0, p.second_cluster_size_nm / 4, (n, 2))
    frames = rng.integers(1, p.n_frames + 1, n)
    photons = rng.lognormal(np.log(p.photons_median * 0.7), 0.5, n)
    prec = np.clip(p.psf_factor / np.sqrt(photons), *p.precision_range_nm)
    xy = xy + rng.normal(0, 1, (n, 2)) * prec[:, None]
    return xy, frames.astype(np.int64), photons.astype(np.float32), prec.astype(np.float32)


def simulate_field(
    n_nuclei: int = 4,
    presets=("somatic", "pluripotent"),
    seed: int = 0,
    field_nm: tuple = (40_000.0, 40_000.0),
    n_localizations: int = 60_000,
    background_per_um2: float = 2.0,
    gap_nm: float = 1500.0,
    **overrides,
) -> pd.DataFrame:
    """A field of view with several non-overlapping simulated nuclei.

    Parameters
    ----------
    n_nuclei : int
    presets : sequence of str
        Cycled over the nuclei (nucleus ``i`` gets ``presets[i % len(presets)]``).
    field_nm : (width, height)
    n_localizations : int
        Per nucleus.
    background_per_um2 : float
        Uniform non-specific localizations between nuclei.

    Returns
    -------
    DataFrame
        Localizations with a ``nucleus`` column (1..n, 0 for field background) and
        ``preset``; ``df.attrs["nuclei"]`` lists ``{"label", "preset", "center_nm",
        "outline_nm"}`` (outlines as (y, x) vertices in nm) for ground truth.
    """
    rng = np.random.default_rng(seed)
    w, h = field_nm
    placed, parts, nuclei = [], [], []
    for i in range(n_nuclei):
        preset = presets[i % len(presets)]
        p = make_params(preset, n_localizations=n_localizations, **overrides)
        r = p.radius_nm * (1 + 2 * p.irregularity)
        for _ in range(500):
            c = np.array([rng.uniform(r + 500, w - r - 500), rng.uniform(r + 500, h - r - 500)])
            if all(np.hypot(*(c - q)) > r + rq + gap_nm for q, rq in placed):
                break
        else:
            raise ValueError(f"cannot place {n_nuclei} nuclei in a {w:.0f} x {h:.0f} nm field")
        placed.append((c, r))
        df = simulate_nucleus(p, seed=int(rng.integers(0, 2**31)), center_nm=tuple(c))
        df["nucleus"] = i + 1
        df["preset"] = preset
        nuclei.append(
            {
                "label": i + 1,
                "preset": preset,
                "center_nm": c.tolist(),
                "outline_nm": df.attrs["outline_nm"],
            }
        )
        parts.append(df)
    n_bg = int(background_per_um2 * w * h / 1e6)
    bg = pd.DataFrame(
        {
            "x_nm": rng.uniform(0, w, n_bg),
            "y_nm": rng.uniform(0, h, n_bg),
            "frame": rng.integers(1, 20_001, n_bg),
            "photons": rng.lognormal(np.log(800), 0.5, n_bg).astype(np.float32),
        }
    )
    bg["precision_nm"] = np.clip(400 / np.sqrt(bg["photons"]), 5, 25).astype(np.float32)
    bg["channel"] = "0"
    bg["clutch"] = -1
    bg["emitter"] = -1
    bg["nucleus"] = 0
    bg["preset"] = "background"
    out = pd.concat([*parts, bg], ignore_index=True)
    out = out.sort_values("frame", kind="stable").reset_index(drop=True)
    out.attrs = {"nuclei": nuclei, "field_nm": [float(w), float(h)], "seed": seed}
    return out


def labels_from_outlines(nuclei: list[dict], shape, scale_nm, translate_nm) -> np.ndarray:
    """Ground-truth label image for nuclei outlines on a render grid (napari geometry)."""
    from skimage.draw import polygon

    labels = np.zeros(shape, np.int32)
    for n in nuclei:
        yx = np.asarray(n["outline_nm"])
        rows = (yx[:, 0] - translate_nm[0]) / scale_nm[0]
        cols = (yx[:, 1] - translate_nm[1]) / scale_nm[1]
        rr, cc = polygon(rows, cols, shape)
        labels[rr, cc] = n["label"]
    return labels


# ------------------------------------------------------------------ npe2 sample data
def storm_nuclei_sample():
    """npe2 sample: a field of somatic and pluripotent nuclei, rendered at 20 nm."""
    from napari_nucleus_ai.localizations.layers import table_layers
    from napari_nucleus_ai.localizations.table import from_dataframe

    df = simulate_field(
        n_nuclei=4, presets=("somatic", "pluripotent"), seed=3, n_localizations=60_000
    )
    table = from_dataframe(df, fmt="simulated")
    table.metadata["nuclei"] = df.attrs["nuclei"]
    return table_layers(table, points=False, pixel_size_nm=20.0, name="STORM nuclei (simulated)")


def storm_nucleus_two_colour_sample():
    """npe2 sample: one somatic nucleus with chromatin (ch 0) and RNA Pol II (ch 1), 10 nm."""
    from napari_nucleus_ai.localizations.layers import table_layers
    from napari_nucleus_ai.localizations.table import from_dataframe

    df = simulate_nucleus(
        "somatic", seed=5, n_localizations=150_000, second_channel_localizations=30_000
    )
    return table_layers(
        from_dataframe(df, fmt="simulated"), points=False, pixel_size_nm=10.0, name="STORM nucleus"
    )


# ------------------------------------------------------------------ blinking with known truth
def simulate_blinking(
    n_emitters: int = 2000,
    field_nm: tuple = (10_000.0, 10_000.0),
    clustered_fraction: float = 0.0,
    emitters_per_cluster: int = 20,
    cluster_sd_nm: float = 25.0,
    precision_nm: float = 10.0,
    n_frames: int = 20_000,
    bursts_mean: float = 2.0,
    on_frames_mean: float = 2.0,
    flicker: float = 0.0,
    photons_median: float = 1500.0,
    n_fiducials: int = 0,
    drift_nm: tuple = (0.0, 0.0),
    seed: int = 0,
) -> pd.DataFrame:
    """Blinking emitters with known precision, bursts, clusters and drift (test truth).

    Each emitter is switched on ``1 + Poisson(bursts_mean - 1)`` times (bursts) at
    uniform random frames; a burst lasts ``Geometric(1 / on_frames_mean)`` consecutive
    frames, of which interior frames are missed with probability ``flicker`` (short dark
    gaps that blink merging bridges). Every localization is the emitter position plus
    Gaussian noise of exactly ``precision_nm`` per axis, so NeNA should return
    ``precision_nm``. A share ``clustered_fraction`` of the emitters sits in clusters of
    ``emitters_per_cluster`` (Gaussian, ``cluster_sd_nm``), centres at least
    ``10 * cluster_sd_nm`` apart; the rest is uniform. ``n_fiducials`` bright beads
    (precision 2 nm) are localized in every frame. ``drift_nm`` = (dx, dy) is the total
    linear drift over the acquisition (plus a sine of 20 % of it), added to every row.

    Returns
    -------
    DataFrame
        ``x_nm, y_nm, frame (1..n_frames), photons, precision_nm, channel`` plus truth
        ``emitter`` (-1 for fiducials), ``burst`` (-1 for fiducials), ``cluster``
        (-1 = not clustered), ``fiducial`` (bool). ``df.attrs`` holds ``n_bursts``,
        ``n_emitters``, ``precision_nm``, ``n_clusters``, ``n_frames`` and ``drift_nm``
        (the true drift of frame ``f`` is :func:`blinking_drift` ``(f, n_frames, drift_nm)``).
    """
    rng = np.random.default_rng(seed)
    w, h = (float(v) for v in field_nm)
    n_emitters = int(n_emitters)
    n_cl_em = int(round(clustered_fraction * n_emitters))
    n_clusters = int(np.ceil(n_cl_em / max(int(emitters_per_cluster), 1))) if n_cl_em else 0
    margin = 4 * cluster_sd_nm
    centres = _spaced_points(rng, n_clusters, (w, h), margin, 10 * cluster_sd_nm)
    cl_of = np.repeat(np.arange(n_clusters), emitters_per_cluster)[:n_cl_em]
    em_xy = np.empty((n_emitters, 2))
    em_xy[:n_cl_em] = centres[cl_of] + rng.normal(0, cluster_sd_nm, (n_cl_em, 2))
    em_xy[n_cl_em:] = rng.uniform((0, 0), (w, h), (n_emitters - n_cl_em, 2))
    cluster = np.concatenate([cl_of, np.full(n_emitters - n_cl_em, -1)]).astype(np.int64)

    n_bursts = 1 + rng.poisson(max(bursts_mean - 1.0, 0.0), n_emitters)
    b_emitter = np.repeat(np.arange(n_emitters), n_bursts)
    b_len = rng.geometric(1.0 / max(on_frames_mean, 1.0), b_emitter.size)
    b_start = rng.integers(1, n_frames + 1, b_emitter.size)
    row_burst = np.repeat(np.arange(b_emitter.size), b_len)
    offset = np.arange(row_burst.size) - np.repeat(np.cumsum(b_len) - b_len, b_len)
    frame = b_start[row_burst] + offset
    interior = (offset > 0) & (offset < b_len[row_burst] - 1)
    keep = (frame <= n_frames) & ~(interior & (rng.random(row_burst.size) < flicker))
    row_burst, frame = row_burst[keep], frame[keep]
    emitter = b_emitter[row_burst]
    n = row_burst.size
    xy = em_xy[emitter] + rng.normal(0, precision_nm, (n, 2))
    photons = rng.lognormal(np.log(photons_median), 0.4, n)
    prec = np.full(n, float(precision_nm))
    fid = np.zeros(n, bool)
    if n_fiducials:
        f_xy = rng.uniform((0, 0), (w, h), (int(n_fiducials), 2))
        f_frames = np.tile(np.arange(1, n_frames + 1), int(n_fiducials))
        f_id = np.repeat(np.arange(int(n_fiducials)), n_frames)
        xy = np.concatenate([xy, f_xy[f_id] + rng.normal(0, 2.0, (f_id.size, 2))])
        frame = np.concatenate([frame, f_frames])
        photons = np.concatenate([photons, rng.lognormal(np.log(50_000), 0.1, f_id.size)])
        prec = np.concatenate([prec, np.full(f_id.size, 2.0)])
        emitter = np.concatenate([emitter, np.full(f_id.size, -1)])
        row_burst = np.concatenate([row_burst, np.full(f_id.size, -1)])
        fid = np.concatenate([fid, np.ones(f_id.size, bool)])
    xy = xy + blinking_drift(frame, n_frames, drift_nm)
    cl_row = np.where(emitter >= 0, cluster[np.maximum(emitter, 0)], -1)
    order = np.lexsort((xy[:, 0], frame))
    df = pd.DataFrame(
        {
            "x_nm": xy[order, 0],
            "y_nm": xy[order, 1],
            "frame": frame[order].astype(np.int64),
            "photons": photons[order].astype(np.float32),
            "precision_nm": prec[order].astype(np.float32),
            "channel": np.full(frame.size, "0", dtype=object),
            "emitter": emitter[order],
            "burst": row_burst[order],
            "cluster": cl_row[order],
            "fiducial": fid[order],
        }
    )
    df.attrs.update(
        n_bursts=int(np.unique(row_burst[row_burst >= 0]).size),
        n_emitters=n_emitters,
        n_clusters=n_clusters,
        precision_nm=float(precision_nm),
        drift_nm=tuple(float(v) for v in drift_nm),
        n_frames=int(n_frames),
        seed=seed,
    )
    return df


def blinking_drift(frames, n_frames: int, drift_nm=(0.0, 0.0)) -> np.ndarray:
    """The drift (x, y) nm that :func:`simulate_blinking` adds at ``frames``: linear to
    ``drift_nm`` at the last frame plus a sine of 20 % of it (axes swapped)."""
    t = np.asarray(frames, float) / float(n_frames)
    dxy = np.asarray(drift_nm, float)
    return np.outer(t, dxy) + 0.2 * np.outer(np.sin(2 * np.pi * t), dxy[::-1])


def _spaced_points(rng, n, field, margin, min_dist):
    """``n`` points in the field at least ``min_dist`` apart (dart throwing, vectorised)."""
    from scipy.spatial import cKDTree

    w, h = field
    pts = np.empty((0, 2))
    for _ in range(50):
        if len(pts) >= n:
            break
        cand = rng.uniform((margin, margin), (w - margin, h - margin), (4 * (n - len(pts)), 2))
        allp = np.concatenate([pts, cand])
        close = cKDTree(allp).query_pairs(min_dist, output_type="ndarray")
        ok = np.ones(len(allp), bool)
        ok[close.max(axis=1) if close.size else []] = False  # keep the earlier of a pair
        ok[: len(pts)] = True
        pts = allp[ok]
    if len(pts) < n:
        raise ValueError(f"cannot place {n} clusters {min_dist:g} nm apart in the field")
    return pts[:n]


def frc_test_pattern(
    n_emitters: int = 20_000,
    localizations_per_emitter: int = 10,
    precision_nm: float = 10.0,
    field_nm: float = 10_000.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Uniform random emitters, each localized exactly K times with precision sigma.

    Split at random into halves, the expected FRC of this pattern is
    ``1 / (1 + 2 exp(4 pi^2 sigma^2 f^2) / (K - 1))`` (same-emitter pairs in both halves
    correlate, Nieuwenhuizen et al. 2013), so the 1/7 threshold is crossed at
    ``resolution = 2 pi sigma / sqrt(ln(3 (K - 1)))``, stored in
    ``df.attrs["frc_analytic_nm"]`` (34.6 nm for sigma = 10 nm, K = 10).
    """
    rng = np.random.default_rng(seed)
    k = int(localizations_per_emitter)
    if k < 2:
        raise ValueError("the FRC test pattern needs at least 2 localizations per emitter")
    em = rng.uniform(0, field_nm, (int(n_emitters), 2))
    idx = np.repeat(np.arange(int(n_emitters)), k)
    xy = em[idx] + rng.normal(0, precision_nm, (idx.size, 2))
    df = pd.DataFrame(
        {
            "x_nm": xy[:, 0],
            "y_nm": xy[:, 1],
            "frame": rng.integers(1, 10_001, idx.size),
            "photons": np.full(idx.size, 1000.0, np.float32),
            "precision_nm": np.full(idx.size, precision_nm, np.float32),
            "channel": np.full(idx.size, "0", dtype=object),
            "emitter": idx,
        }
    )
    df.attrs["frc_analytic_nm"] = float(2 * np.pi * precision_nm / np.sqrt(np.log(3 * (k - 1))))
    return df
