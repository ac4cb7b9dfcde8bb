"""Stain and colour: nucleus-referenced normalisation (every path) and augmentation (training).

Normalisation maps a canonical cell frame (:mod:`.cellframe`) to the training set's
colours before the model measures it:

* :func:`od_fit` - the reference: the median optical density (OD) vector of the training
  frames' nuclei and their median plasma colour, as plain numbers for the card;
* :func:`od_normalise` - OD against the frame's own plasma colour, scaled per channel so
  the nucleus gets the reference OD, re-rendered on the reference plasma colour. Pale and
  dark nuclear stains, and any white balance of the camera, map to the training look.

Augmentation perturbs a raw crop as another stain batch or camera would (training only):

* :func:`hed_jitter` - haematoxylin / eosin / DAB concentrations scaled and shifted in the
  HED colour-deconvolution space (``skimage.color.rgb2hed``; Tellez et al. 2018);
* :func:`light_jitter` - white balance (per-channel gain), exposure and gamma.
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


def blur_jitter(rgb: np.ndarray, rng: np.random.Generator, sigma_frac: float = 0.005):
    """A random defocus: Gaussian blur of ``U(0, sigma_frac)`` x the crop side."""
    from scipy import ndimage as ndi

    s = float(rng.uniform(0, sigma_frac)) * min(rgb.shape[:2])
    if s < 0.3:
        return np.asarray(rgb, np.float32)
    return ndi.gaussian_filter(np.asarray(rgb, np.float32), (s, s, 0))


def augment_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One training copy of an RGB crop as another stain batch, camera and focus would
    make it: :func:`hed_jitter`, :func:`light_jitter`, then :func:`blur_jitter` (half
    of the copies)."""
    from napari_nucleus_ai.models.crops import to_float

    x = np.clip(to_float(np.asarray(rgb))[..., :3], 0, 1)
    x = light_jitter(hed_jitter(x, rng), rng)
    return blur_jitter(x, rng) if rng.random() < 0.5 else x


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
