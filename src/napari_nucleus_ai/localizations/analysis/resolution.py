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
        # rfft stores half the plane; columns 1..nx/2-1 stand for two coefficients each:
        # they get their own bins (offset nr + 1), summed twice (no per-pixel multiply)
        double = np.ones(fx.shape[1], bool)
        double[0] = False
        if nx % 2 == 0:
            double[-1] = False
        self.n = n
        self.nr = n // 2 + 1
        ring = np.minimum(ring, self.nr)  # corners beyond the last ring: overflow bin
        self.ring = ring + (self.nr + 1) * np.broadcast_to(double, (ny, fx.shape[1])).ravel()

    def sum(self, values: np.ndarray) -> np.ndarray:
        s = np.bincount(self.ring, values.ravel(), 2 * (self.nr + 1))
        return s[: self.nr] + 2 * s[self.nr + 1 : 2 * self.nr + 1]


def _fft(img):
    from scipy import fft

    return fft.rfft2(img.astype(np.float32, copy=False), workers=-1)


def _power(f):
    return f.real * f.real + f.imag * f.imag


def _curve(fa, fb, rings: _Rings) -> np.ndarray:
    cross = rings.sum(fa.real * fb.real + fa.imag * fb.imag)
    pa = rings.sum(_power(fa))
    pb = rings.sum(_power(fb))
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
    (the transform is linear), so a split costs one FFT and two ring sums
    (``numpy.bincount``). Images are zero-padded to fast FFT sizes
    (``scipy.fft.next_fast_len``).
    """
    from scipy import fft as sfft

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
    # zero-pad to sizes the FFT handles fast (a prime side is several times slower)
    ny_p, nx_p = sfft.next_fast_len(ny), sfft.next_fast_len(nx, real=True)
    ix = np.clip(((x - x0) // px).astype(np.int64), 0, nx - 1)
    iy = np.clip(((y - y0) // px).astype(np.int64), 0, ny - 1)
    flat = iy * nx_p + ix

    def hist(idx):
        return np.bincount(idx, minlength=nx_p * ny_p).astype(np.float32).reshape(ny_p, nx_p)

    rings = _Rings((ny_p, nx_p))
    f_all = _fft(hist(flat))
    p_all = rings.sum(_power(f_all))
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(int(n_splits)):
        half = rng.random(x.size) < 0.5
        f1 = _fft(hist(flat[half]))
        # F2 = F_all - F1 (linear), so two ring sums per split give the whole curve
        p1 = rings.sum(_power(f1))
        c1a = rings.sum(f1.real * f_all.real + f1.imag * f_all.imag)
        cross, p2 = c1a - p1, p_all - 2 * c1a + p1
        with np.errstate(invalid="ignore", divide="ignore"):
            curves.append(np.nan_to_num(cross / np.sqrt(p1 * np.maximum(p2, 0))))
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
