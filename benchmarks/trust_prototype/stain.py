"""Stain augmentation (training) and normalisation (training and inference).

Augmentation perturbs the raw crop *before* it is framed, as another microscope would:

* :func:`hed_jitter` - haematoxylin / eosin / DAB concentrations scaled and shifted in
  the HED colour-deconvolution space (Tellez et al. 2018), ``skimage.color.rgb2hed``;
* :func:`light_jitter` - white balance (per-channel gain), exposure and gamma.

Normalisation maps a frame to a reference colour before features are taken:

* :func:`plasma_balance` - divides by the frame's own plasma colour and multiplies by
  a reference plasma colour (white balance on the background; class-independent);
* :func:`reinhard` - matches the LAB mean/std of the frame to reference numbers
  (:func:`reinhard_fit` stores them as plain floats).
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.models.stain import _nucleus_od, hed_jitter, light_jitter  # noqa: F401 (the product's own)


def hed_shift(rgb: np.ndarray, scale=(0.75, 1.25, 1.0), shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A fixed HED change (``c * scale + shift`` per H, E, D channel)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(rgb, 1e-4, 1))
    return np.clip(hed2rgb(hed * np.asarray(scale) + np.asarray(shift)), 0, 1).astype(np.float32)


def plasma_balance(rgb: np.ndarray, plasma, reference=(0.95, 0.9, 0.85)) -> np.ndarray:
    """White balance by the plasma colour: ``rgb / plasma * reference`` (clipped)."""
    p = np.maximum(np.asarray(plasma, np.float32), 1e-2)
    return np.clip(rgb / p * np.asarray(reference, np.float32), 0, 1).astype(np.float32)


def _lab(rgb):
    from skimage.color import rgb2lab

    return rgb2lab(np.clip(rgb, 0, 1))


def reinhard_fit(frames) -> dict:
    """Reference LAB statistics (plain floats): mean of per-frame means and stds."""
    st = np.array(
        [[*_lab(f).reshape(-1, 3).mean(0), *_lab(f).reshape(-1, 3).std(0)] for f in frames]
    )
    m = st.mean(0)
    return {"mean": [float(v) for v in m[:3]], "std": [float(v) for v in m[3:]]}


def reinhard(rgb: np.ndarray, ref: dict) -> np.ndarray:
    """Reinhard colour transfer: LAB mean/std of ``rgb`` matched to ``ref``."""
    from skimage.color import lab2rgb

    lab = _lab(rgb)
    mu = lab.reshape(-1, 3).mean(0)
    sd = lab.reshape(-1, 3).std(0) + 1e-3
    out = (lab - mu) / sd * np.asarray(ref["std"]) + np.asarray(ref["mean"])
    return np.clip(lab2rgb(out), 0, 1).astype(np.float32)


def od_fit(frames, plasmas) -> dict:
    """Reference for :func:`od_normalise` from training frames: median nucleus OD vector
    and median plasma colour (plain floats)."""
    v = np.array([_nucleus_od(f, p)[1] for f, p in zip(frames, plasmas)])
    return {
        "nucleus_od": np.median(v, 0).tolist(),
        "plasma": np.median(np.asarray(plasmas), 0).tolist(),
    }


def od_normalise(
    frame: np.ndarray, plasma, ref: dict, lo: float = 0.33, hi: float = 3.0
) -> np.ndarray:
    """Nucleus-referenced stain normalisation.

    Optical density against the frame's own plasma colour is scaled per channel so the
    nucleus (densest 5 % of the centre) gets the reference nucleus OD, then re-rendered
    on the reference plasma colour: pale and dark nuclear stains, and any white balance,
    map to the training look. Scales are clipped to [``lo``, ``hi``].
    """
    od, v = _nucleus_od(frame, plasma)
    s = np.clip(np.asarray(ref["nucleus_od"]) / np.maximum(v, 1e-3), lo, hi)
    return np.clip(np.asarray(ref["plasma"]) * np.exp(-od * s), 0, 1).astype(np.float32)
