"""FRC resolution of a localization image (Nieuwenhuizen et al. 2013).

The localizations are split at random into two halves; each half is rendered as a
histogram (:func:`..render.render_localizations`, the same grid for both) and the
Fourier ring correlation::

    FRC(q) = Re sum_ring F1 F2* / sqrt(sum_ring |F1|^2 sum_ring |F2|^2)

is computed on rings one frequency step (``1 / (N pixel)``) wide. The curve is
averaged over ``n_splits`` random splits, smoothed (moving average of ``smooth``
rings) and the resolution is ``1 / q`` at the first crossing below ``1/7``
(linear interpolation between rings).

Splitting localizations (not molecules) keeps repeated localizations of one molecule
in both halves; they correlate, so the resolution includes that effect (the test
pattern in :func:`napari_nucleus_ai.samples.storm.frc_test_pattern` has the
closed-form answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import frame_of, region_mask

THRESHOLD = 1.0 / 7.0


@dataclass
class FrcResult:
    """FRC resolution and the curve to plot.

    Attributes
    ----------
    resolution_nm : float
        ``1 / q`` where the smoothed curve first falls below 1/7 (NaN if it never does).
    frequency : ndarray
        Ring frequencies in 1/nm.
    curve, curve_smooth : ndarray
        Mean FRC over the splits, and smoothed.
    curves : ndarray
        ``(n_splits, rings)`` every split's curve.
    """

    resolution_nm: float
    frequency: np.ndarray
    curve: np.ndarray
    curve_smooth: np.ndarray
    curves: np.ndarray
    pixel_size_nm: float
    threshold: float = THRESHOLD


class _Rings:
    """Ring index and rfft weights of one image shape (computed once per FRC)."""

    def __init__(self, shape):
        ny, nx = shape
        n = max(ny, nx)
        # frequencies in units of 1 / (n pixel) of the larger side (square rings)
        fy = np.fft.fftfreq(ny)[:, None] * n
        fx = np.fft.rfftfreq(nx)[None, :] * n
        ring = np.rint(np.sqrt(fy * fy + fx * fx)).astype(np.int64).ravel()
        # rfft stores half the plane; columns 1..nx/2-1 stand for two coefficients each
        wcol = np.full(fx.shape[1], 2.0)
        wcol[0] = 1.0
        if nx % 2 == 0:
            wcol[-1] = 1.0
        self.w = np.broadcast_to(wcol[None, :].astype(np.float32), (ny, fx.shape[1]))
        self.n = n
        self.nr = n // 2 + 1
        self.ring = np.minimum(ring, self.nr)  # corners beyond the last ring: overflow bin

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.ring, (values * self.w).ravel(), self.nr + 1)[: self.nr]


def _fft(img):
    from scipy import fft

    return fft.rfft2(img.astype(np.float32, copy=False), workers=-1)


def _curve(fa, fb, rings: _Rings) -> np.ndarray:
    cross = rings.sum((fa * np.conj(fb)).real)
    pa = rings.sum(fa.real**2 + fa.imag**2)
    pb = rings.sum(fb.real**2 + fb.imag**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(cross / np.sqrt(pa * pb))


def frc_curve_from_images(a: np.ndarray, b: np.ndarray):
    """FRC between two images: ``(rings, curve, n)``, rings in units of ``1 / (n pixel)``."""
    rings = _Rings(a.shape)
    return np.arange(rings.nr), _curve(_fft(a), _fft(b), rings), rings.n


def frc(
    df,
    pixel_size_nm: float = 10.0,
    n_splits: int = 5,
    region=None,
    smooth: int = 3,
    seed: int = 0,
) -> FrcResult:
    """FRC resolution of a file or a region, averaged over random splits.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
        ``x_nm, y_nm``.
    pixel_size_nm : float
        Render pixel (default 10 nm; use about a third of the expected resolution).
    n_splits : int
        Random half splits averaged (default 5).
    region : optional
        As in :func:`.precision.nena`.
    smooth : int
        Width (rings) of the moving average before thresholding.
    seed : int

    Returns
    -------
    FrcResult

    Notes
    -----
    The halves are histograms on the grid of :func:`..render.render_localizations`
    (``render.grid``: the same pixels as ``method="histogram"``). The image of all
    localizations is transformed once; the second half of a split is ``F_all - F_1``
    (the transform is linear), so a split costs one FFT.
    """
    from napari_nucleus_ai.localizations.render import MAX_PIXELS, grid

    df = frame_of(df)
    if region is not None:
        df = df[region_mask(df, region)]
    if len(df) < 100:
        raise InputError(None, f"FRC needs more localizations ({len(df)})")
    if n_splits < 1:
        raise InputError(None, "FRC needs at least one split")
    px = float(pixel_size_nm)
    if not px > 0:
        raise InputError(None, f"pixel size must be positive (got {pixel_size_nm})")
    x = df["x_nm"].to_numpy(np.float64)
    y = df["y_nm"].to_numpy(np.float64)
    x0, nx = grid(float(x.min()), float(x.max()), px)
    y0, ny = grid(float(y.min()), float(y.max()), px)
    if nx * ny > MAX_PIXELS:
        raise InputError(None, f"a {ny}x{nx} FRC image is too large; use larger pixels")
    flat = ((y - y0) // px).astype(np.int64) * nx + ((x - x0) // px).astype(np.int64)
    flat = np.clip(flat, 0, nx * ny - 1)

    def hist(idx):
        return np.bincount(idx, minlength=nx * ny).astype(np.float32).reshape(ny, nx)

    rings = _Rings((ny, nx))
    f_all = _fft(hist(flat))
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(int(n_splits)):
        half = rng.random(x.size) < 0.5
        f1 = _fft(hist(flat[half]))
        curves.append(_curve(f1, f_all - f1, rings))
    curves = np.asarray(curves)
    curve = curves.mean(0)
    freq = np.arange(rings.nr) / (rings.n * px)
    k = max(int(smooth), 1)
    sm = np.convolve(curve, np.ones(k) / k, mode="same") if k > 1 else curve.copy()
    sm[: k // 2 + 1] = curve[: k // 2 + 1]
    return FrcResult(
        resolution_nm=_crossing(freq, sm),
        frequency=freq,
        curve=curve,
        curve_smooth=sm,
        curves=curves,
        pixel_size_nm=px,
    )


def _crossing(freq, curve, threshold: float = THRESHOLD) -> float:
    below = np.flatnonzero((curve[1:] < threshold) & (freq[1:] > 0)) + 1
    if not below.size:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float("nan")
    c0, c1 = curve[i - 1], curve[i]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    q = freq[i - 1] + t * (freq[i] - freq[i - 1])
    return float(1.0 / q) if q > 0 else float("nan")
