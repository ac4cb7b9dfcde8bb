"""Stain and colour: normalisation (every path) and augmentation (training).

Normalisation maps a canonical cell frame (:mod:`.cellframe`) to the training set's
colours before the model measures it (:func:`normalise_stain`, by the card's stain
``kind``):

* :func:`od_fit` - the reference: the median optical density (OD) vector of the training
  frames' nuclei and their median plasma colour, as plain numbers for the card;
* :func:`two_point_normalise` (``"two_point"``, what ``train`` fits) - OD against the
  frame's own plasma colour, every OD vector rotated so the nucleus' direction becomes the
  reference's and scaled by one number so its density does, re-rendered on the reference
  plasma colour: the plasma and the nucleus land on the training look, the cytoplasm keeps
  its density and hue relative to the nucleus;
* :func:`od_normalise` (``"nucleus_od"``) - the OD scaled per channel so the nucleus gets
  the reference OD (a lilac cytoplasm can turn as dark as a nucleus).

Augmentation makes training copies of a raw crop as another microscope would show it
(:func:`augment_set` of :func:`augment_crop` = :func:`microscope_jitter`: framing, pixel
size, stain density / contrast / hue, background colour, defocus, JPEG). :func:`hed_jitter`
(haematoxylin / eosin / DAB concentrations in the HED colour-deconvolution space,
``skimage.color.rgb2hed``; Tellez et al. 2018) and :func:`light_jitter` (white balance,
exposure, gamma) are milder stain and camera jitters for other models.
"""

from __future__ import annotations

import numpy as np

#: The normalisation's per-channel scales are clipped to this range.
SCALE_RANGE = (0.33, 3.0)


def _nucleus_od(frame: np.ndarray, plasma) -> tuple[np.ndarray, np.ndarray]:
    """(OD image, median OD vector of the densest 5 % of the central disk = the nucleus)."""
    bg = np.maximum(np.asarray(plasma, np.float32), 1e-2)
    od = np.maximum(-np.log(np.clip(frame, 1e-3, 1) / bg), 0)
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    centre = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) < 0.3 * min(h, w)
    tot = od.sum(-1)
    sel = centre & (tot >= np.percentile(tot[centre], 95))
    return od, np.median(od[sel], axis=0)


def od_fit(frames, plasmas) -> dict:
    """Reference for :func:`od_normalise` from training frames and their plasma colours.

    Returns ``{"nucleus_od": [3 floats], "plasma": [3 floats]}`` (medians).
    """
    v = np.array([_nucleus_od(f, p)[1] for f, p in zip(frames, plasmas, strict=True)])
    return {
        "nucleus_od": [float(x) for x in np.median(v, 0)],
        "plasma": [float(x) for x in np.median(np.asarray(plasmas, float), 0)],
    }


def od_normalise(frame: np.ndarray, plasma, ref: dict) -> np.ndarray:
    """Nucleus-referenced stain normalisation of a frame (see the module docstring).

    Parameters
    ----------
    frame : np.ndarray (H, W, 3)
        A canonical cell frame in [0, 1] (the nucleus at its centre).
    plasma : (3,) floats
        The frame's plasma colour (:func:`.cellframe.find_cell`).
    ref : dict
        :func:`od_fit`'s reference.
    """
    od, v = _nucleus_od(frame, plasma)
    s = np.clip(np.asarray(ref["nucleus_od"]) / np.maximum(v, 1e-3), *SCALE_RANGE)
    return np.clip(np.asarray(ref["plasma"]) * np.exp(-od * s), 0, 1).astype(np.float32)


def hed_jitter(
    rgb: np.ndarray, rng: np.random.Generator, sigma: float = 0.08, bias: float = 0.02
) -> np.ndarray:
    """Random HED stain perturbation of an RGB image in [0, 1].

    Each of the H, E, D concentration channels ``c`` becomes ``c * a + b`` with
    ``a ~ U(1 - sigma, 1 + sigma)``, ``b ~ U(-bias, bias)``.
    """
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(rgb, 1e-4, 1))
    a = rng.uniform(1 - sigma, 1 + sigma, 3)
    b = rng.uniform(-bias, bias, 3)
    return np.clip(hed2rgb(hed * a + b), 0, 1).astype(np.float32)


def light_jitter(
    rgb: np.ndarray,
    rng: np.random.Generator,
    gain: float = 0.08,
    exposure: float = 0.1,
    gamma: float = 0.15,
) -> np.ndarray:
    """Random white balance (per-channel gain), exposure and gamma of an RGB image in [0, 1]."""
    g = rng.uniform(1 - gain, 1 + gain, 3) * rng.uniform(1 - exposure, 1 + exposure)
    gm = np.exp(rng.uniform(-gamma, gamma))
    return np.clip(np.clip(rgb, 0, 1) ** gm * g, 0, 1).astype(np.float32)


def augment_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One training copy of an RGB crop as another microscope could show it
    (:func:`microscope_jitter`)."""
    return microscope_jitter(rgb, rng)


def augment_set(items, labels, copies: int, seed: int = 0):
    """``items`` followed by ``copies`` :func:`augment_crop` copies of each.

    Returns ``(items, labels, groups)``; ``groups`` is the index of the original crop of
    every row, so a crop and its copies can stay on one side of an inner split.
    """
    rng = np.random.default_rng(seed)
    items = list(items)
    labels = np.asarray(labels)
    n = len(items)
    out = items + [augment_crop(items[i], rng) for _ in range(int(copies)) for i in range(n)]
    groups = np.tile(np.arange(n), int(copies) + 1)
    return out, labels[groups], groups


def _rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 3x3 rotation taking the direction of ``a`` to that of ``b`` (Rodrigues)."""
    a = a / max(np.linalg.norm(a), 1e-9)
    b = b / max(np.linalg.norm(b), 1e-9)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def two_point_normalise(frame: np.ndarray, plasma, ref: dict) -> np.ndarray:
    """Contrast-preserving stain normalisation of a frame: the plasma becomes the
    reference plasma and the nucleus the reference nucleus OD, every other pixel moved
    with them by one rotation and one scale of its OD vector.

    The frame's OD vectors (against its own plasma colour) are rotated so the nucleus'
    direction becomes the reference's and scaled by one number so its density does: the
    cytoplasm keeps its density relative to the nucleus and its hue relative to the
    nuclear stain (unlike a per-channel scale, which can darken a lilac cytoplasm to a
    nucleus' density). Parameters as :func:`od_normalise`.
    """
    od, v = _nucleus_od(frame, plasma)
    r = np.asarray(ref["nucleus_od"], float)
    s = float(np.clip(np.linalg.norm(r) / max(np.linalg.norm(v), 1e-3), *SCALE_RANGE))
    m = (s * _rotation(v, r)).astype(np.float32)
    od = np.maximum(od @ m.T, 0)
    return np.clip(np.asarray(ref["plasma"]) * np.exp(-od), 0, 1).astype(np.float32)


def _grey_rotation(theta: float) -> np.ndarray:
    """Rotation by ``theta`` (radians) about the grey axis of OD space (a hue rotation)."""
    k = np.ones(3) / np.sqrt(3)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def microscope_jitter(
    rgb: np.ndarray,
    rng: np.random.Generator,
    contrast: float = 0.5,
    hue_deg: float = 25.0,
    mix: float = 0.4,
    defocus: float = 0.03,
) -> np.ndarray:
    """One training copy of an RGB crop as another microscope could show it.

    In turn, each drawn at random: framing (half of the copies cut tightly around the
    cell, 1.1-2 cell diameters), pixel size (half of the copies 0.5-1 x as many pixels),
    the stain in optical density (OD) against the crop's plasma colour - density
    compressed (``t ** g`` of the normalised total OD, ``g`` 0.5-1: a paler nucleus
    against a darker cytoplasm), scaled 0.6-1.3, hue directions mixed 0-40 % towards
    their mean and rotated about the grey axis by up to 25 degrees -, the background
    colour (per-channel 0.85-1.1), a defocus (Gaussian sigma 0-3 % of the cell
    diameter) and JPEG compression (half of the copies, quality 40-90).

    ``contrast`` (the smallest ``g``), ``hue_deg``, ``mix`` and ``defocus`` (as a fraction of
    the cell diameter) set the strength; the defaults are the ranges above.
    """
    from scipy import ndimage as ndi

    from napari_nucleus_ai.models.cellframe import find_cell
    from napari_nucleus_ai.models.crops import to_float

    x = np.clip(to_float(np.asarray(rgb))[..., :3], 0, 1).astype(np.float32)
    found = find_cell(x, red_cells=False)  # the centre and diameter only
    x, d = _framing_jitter(x, found, rng)
    x = _od_jitter(x, rng, contrast, hue_deg, mix)
    s = rng.uniform(0, defocus) * d
    if s >= 0.3:
        x = ndi.gaussian_filter(x, (s, s, 0))
    if rng.random() < 0.5:
        x = _jpeg(x, int(rng.integers(40, 91)))
    return np.clip(x, 0, 1).astype(np.float32)


def _framing_jitter(x: np.ndarray, found: dict, rng) -> tuple[np.ndarray, float]:
    """Half of the time a tight box of 1.1-2 cell diameters around the found cell, half
    of the time 0.5-1 x the pixels; returns (crop, cell diameter in its pixels)."""
    from skimage.transform import rescale

    d = found["diameter"]
    if rng.random() < 0.5:
        half = 0.5 * rng.uniform(1.1, 2.0) * d
        cy, cx = found["centre"]
        y0, y1 = int(max(0, cy - half)), int(min(x.shape[0], cy + half + 1))
        x0, x1 = int(max(0, cx - half)), int(min(x.shape[1], cx + half + 1))
        if min(y1 - y0, x1 - x0) >= 16:
            x = x[y0:y1, x0:x1]
    if rng.random() < 0.5:
        f = rng.uniform(0.5, 1.0)
        if min(x.shape[:2]) * f >= 16:
            x = np.clip(rescale(x, f, channel_axis=-1, anti_aliasing=True), 0, 1)
            d *= f
    return x, d


def _od_jitter(x: np.ndarray, rng, contrast: float, hue_deg: float, mix: float) -> np.ndarray:
    """The stain of :func:`microscope_jitter` in OD against the plasma: compressed,
    scaled, hue-mixed and -rotated, on a jittered background colour."""
    from napari_nucleus_ai.models.cellframe import plasma_colour

    plasma = np.maximum(plasma_colour(x), 1e-2)
    od = np.maximum(-np.log(np.clip(x, 1e-3, 1) / plasma), 0)
    t = od.sum(-1, keepdims=True)
    u = od / np.maximum(t, 1e-6)
    stained = t[..., 0] > 0.1
    if stained.sum() > 10:
        u = u + rng.uniform(0, mix) * (u[stained].mean(0) - u)
    top = max(float(np.percentile(t, 99)), 1e-3)
    t = top * (t / top) ** rng.uniform(contrast, 1.0) * rng.uniform(0.6, 1.3)
    od = np.maximum((u * t) @ _grey_rotation(np.deg2rad(rng.uniform(-hue_deg, hue_deg))).T, 0)
    bg = np.clip(plasma * rng.uniform(0.85, 1.1, 3), 0, 1)
    return (bg * np.exp(-od)).astype(np.float32)


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """``x`` through JPEG compression at ``quality`` (Pillow)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
        buf, "JPEG", quality=quality
    )
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255


def normalise_stain(frame: np.ndarray, plasma, ref: dict) -> np.ndarray:
    """A frame normalised by the card's stain reference ``ref``: :func:`two_point_normalise`
    for ``kind`` ``"two_point"``, :func:`od_normalise` for ``"nucleus_od"``."""
    if ref.get("kind") == "nucleus_od":
        return od_normalise(frame, plasma, ref)
    return two_point_normalise(frame, plasma, ref)
