"""How much of a cell crop the network sees: the card's ``input.field``.

Crops made for people are framed loosely: the PBC crops show a white cell at
about a third of the crop side among red cells. A fixed descriptor measured on
the whole crop spends most of its pixels on the neighbours. ``field`` is the
fraction of the (centre-squared) crop side that is kept around its centre before
it is resized to the network's ``crop_size``; 1 keeps everything (and is what a
card without the key means).

The field is fixed when a model is trained and stored in its card, so every
later crop (a file given to ``predict``, or a window cut around a segmented cell
by ``classify``) is framed the same way: windows around cells are cut at the
full extent ``crop_size x pixel_size / field`` and the centre ``field`` of them
goes to the network.

:func:`auto_field` chooses the field from the training crops themselves: large
enough that the 90th-percentile cell (measured with the morphology descriptor's
cell mask) fills :data:`FILL` of it.
"""

from __future__ import annotations

import numpy as np

FILL = 1.0 / 1.4  # the 90th-percentile cell diameter is this fraction of the field
MIN_FIELD = 0.2


def field_of(card: dict) -> float:
    """The card's field (1.0 when absent)."""
    return float(card.get("input", {}).get("field", 1.0))


def centre_field(img: np.ndarray, field: float) -> np.ndarray:
    """The central ``field`` fraction of ``img``'s centre square (no resampling)."""
    if field >= 1.0:
        return img
    h, w = img.shape[:2]
    s = min(h, w)
    k = max(1, int(round(s * field)))
    y0, x0 = (h - k) // 2, (w - k) // 2
    return img[y0 : y0 + k, x0 : x0 + k]


def cell_diameters(samples, size: int = 96, limit: int = 200, seed: int = 0) -> np.ndarray:
    """Equivalent diameters of the central cell, in fractions of each crop's side.

    Measured on up to ``limit`` RGB crops (a seeded random choice), resized to ``size``.
    """
    from napari_nucleus_ai.models.crops import square_resize
    from napari_nucleus_ai.models.nets.morphology import cell_mask, nucleus_mask, optical_density

    idx = np.arange(len(samples))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    out = []
    for i in idx:
        rgb = np.clip(square_resize(np.asarray(samples[i]), size)[..., :3], 0, 1)
        od = optical_density(rgb)
        cell = cell_mask(od, nucleus_mask(od))
        out.append(2.0 * np.sqrt(cell.sum() / np.pi) / size)
    return np.asarray(out, float)


def auto_field(samples) -> float:
    """A field for RGB crops ``samples`` in which the 90th-percentile cell fills :data:`FILL`.

    Returns a value in [:data:`MIN_FIELD`, 1], rounded to 0.01 (1 when the cells
    already fill the crops, or there are no crops).
    """
    if len(samples) == 0:
        return 1.0
    d = cell_diameters(samples)
    if not np.isfinite(d).any():
        return 1.0
    field = float(np.percentile(d[np.isfinite(d)], 90)) / FILL
    return float(np.clip(round(field, 2), MIN_FIELD, 1.0))
