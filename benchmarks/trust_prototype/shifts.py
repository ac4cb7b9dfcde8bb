"""Simulated domain shifts of single-cell crops (what another microscope does to a crop).

Every shift is a function ``rgb -> rgb`` on an RGB crop in [0, 1] with the cell at the
centre (as the PBC crops). :data:`SHIFTS` maps names to them; parameters are fixed and
deliberately *outside* the training augmentation ranges of :mod:`trust_prototype.stain`.
"""

from __future__ import annotations

import io

import numpy as np


def rescale(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Change the pixel size (same field of view): ``factor`` 0.5 halves the pixel count."""
    from skimage.transform import rescale as sk_rescale

    return np.clip(
        sk_rescale(rgb, factor, channel_axis=-1, order=1, anti_aliasing=factor < 1), 0, 1
    ).astype(np.float32)


def cell_diameter_px(rgb: np.ndarray) -> float:
    """Central cell diameter in px (the morphology descriptor's watershed cell mask at 96 px),
    independent of :mod:`trust_prototype.frame`."""
    from napari_nucleus_ai.crops import square_resize
    from napari_nucleus_ai.models.morphology import cell_mask, nucleus_mask, optical_density

    small = np.clip(square_resize(rgb, 96), 0, 1)
    od = optical_density(small)
    cell = cell_mask(od, nucleus_mask(od))
    return 2 * np.sqrt(cell.sum() / np.pi) / 96 * rgb.shape[0]


def tight(rgb: np.ndarray, margin: float = 1.15) -> np.ndarray:
    """The cell fills the crop: centre square of ``margin`` x the cell diameter
    (at least 25 % of the side), like a detector box cut from a field."""
    s = rgb.shape[0]
    k = int(np.clip(margin * cell_diameter_px(rgb), 0.25 * s, s))
    o = (s - k) // 2
    return rgb[o : o + k, o : o + k]


def loose(rgb: np.ndarray, pad: float = 0.3) -> np.ndarray:
    """Looser framing: ``pad`` x side of reflected surroundings added on every side
    (the PBC cell becomes ~1/5 of the side; the mirror stays clear of the cell)."""
    p = int(pad * rgb.shape[0])
    return np.pad(rgb, ((p, p), (p, p), (0, 0)), mode="reflect")


def white_balance(rgb: np.ndarray, gains=(0.85, 0.97, 1.12), gamma: float = 0.8) -> np.ndarray:
    """Another camera: bluish white balance and a different gamma."""
    return np.clip(np.clip(rgb, 0, 1) ** gamma * np.asarray(gains), 0, 1).astype(np.float32)


def stain(rgb: np.ndarray) -> np.ndarray:
    """Another stain batch: less haematoxylin, more eosin (HED x 0.7, 1.3)."""
    from .stain import hed_shift

    return hed_shift(rgb, (0.7, 1.3, 1.0), (0.0, 0.0, 0.0))


def blur(rgb: np.ndarray, sigma_frac: float = 0.007) -> np.ndarray:
    """Defocus: Gaussian blur of ``sigma_frac`` x side (2.5 px on a 360 px crop)."""
    from scipy import ndimage as ndi

    s = sigma_frac * rgb.shape[0]
    return np.stack([ndi.gaussian_filter(rgb[..., c], s) for c in range(3)], -1).astype(np.float32)


def jpeg(rgb: np.ndarray, quality: int = 30) -> np.ndarray:
    """JPEG compression at ``quality``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
        buf, "JPEG", quality=quality
    )
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255


def another_microscope(rgb: np.ndarray) -> np.ndarray:
    """Everything at once, like the BCCD camera: tight box, 0.6x pixels, paler
    haematoxylin, bluish white balance, blur, JPEG q=50."""
    x = tight(rgb, 1.2)
    x = rescale(x, 0.6)
    x = stain(x)
    x = white_balance(x, (0.9, 0.98, 1.08), 0.9)
    x = blur(x, 0.006)
    return jpeg(x, 50)


SHIFTS = {
    "scale_0.5x": lambda x: rescale(x, 0.5),
    "scale_2x": lambda x: rescale(x, 2.0),
    "tight": tight,
    "loose": loose,
    "stain_hed": stain,
    "white_balance": white_balance,
    "blur": blur,
    "jpeg_q30": jpeg,
    "another_microscope": another_microscope,
}
