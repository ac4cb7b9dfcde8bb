"""Drift correction by cross-correlating renders of time segments (RCC, Wang et al. 2014).

The frames are cut into ``segments`` of equal localization count; each segment is
rendered (histogram blurred by one pixel) on a common grid; the shift between every
pair of segments is the sub-pixel peak of their cross-correlation (FFT, peak refined
by a parabola), and the segment positions are the least-squares solution of all pair
shifts (segment 0 fixed). The drift of every frame is interpolated linearly between
segment centres and subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress


@dataclass
class DriftResult:
    """Corrected table plus the drift: ``segment_frames`` and ``drift_nm`` (n, 2) as (dx, dy)."""

    data: pd.DataFrame
    segment_frames: np.ndarray
    drift_nm: np.ndarray

    def drift_at(self, frames) -> np.ndarray:
        f = np.asarray(frames, float)
        return np.column_stack(
            [np.interp(f, self.segment_frames, self.drift_nm[:, i]) for i in range(2)]
        )


def _peak(cc: np.ndarray) -> tuple[float, float]:
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)

    def refine(m1, c0, p1):
        den = m1 - 2 * c0 + p1
        return 0.0 if den == 0 else 0.5 * (m1 - p1) / den

    ny, nx = cc.shape
    dy = refine(cc[(iy - 1) % ny, ix], cc[iy, ix], cc[(iy + 1) % ny, ix])
    dx = refine(cc[iy, (ix - 1) % nx], cc[iy, ix], cc[iy, (ix + 1) % nx])
    return iy + dy, ix + dx


def drift_correct_gen(
    df: pd.DataFrame, segments: int = 8, pixel_size_nm: float = 20.0, max_drift_nm: float = 1000.0
):
    """Generator: yields :class:`Progress`, returns a :class:`DriftResult`."""
    from scipy.ndimage import gaussian_filter

    from napari_nucleus_ai.localizations.render import grid

    if len(df) < segments * 50:
        raise InputError(None, f"too few localizations ({len(df)}) for {segments} drift segments")
    if segments < 2:
        raise InputError(None, "drift correction needs at least 2 segments")
    frames = df["frame"].to_numpy()
    order = np.argsort(frames, kind="stable")
    cuts = np.array_split(order, segments)
    x = df["x_nm"].to_numpy()
    y = df["y_nm"].to_numpy()
    px = float(pixel_size_nm)
    x0, nx = grid(x.min(), x.max(), px)
    y0, ny = grid(y.min(), y.max(), px)
    if nx * ny > 64_000_000:
        raise InputError(None, "field too large for drift correction at this pixel size")
    ffts = []
    for i, idx in enumerate(cuts):
        ix = ((x[idx] - x0) / px).astype(np.intp)
        iy = ((y[idx] - y0) / px).astype(np.intp)
        img = np.bincount(iy * nx + ix, minlength=nx * ny).reshape(ny, nx).astype(np.float32)
        img = gaussian_filter(img, 1.0)
        img -= img.mean()
        ffts.append(np.fft.rfft2(img))
        yield Progress(i + 1, 2 * segments, "rendering segments")
    pairs, shifts = [], []
    lim = max_drift_nm / px
    total_pairs = segments * (segments - 1) // 2
    k = 0
    for i in range(segments):
        for j in range(i + 1, segments):
            cc = np.fft.irfft2(ffts[i] * np.conj(ffts[j]), s=(ny, nx))
            cc = np.fft.fftshift(cc)
            cy, cx = ny // 2, nx // 2
            r = int(np.ceil(lim))
            win = cc[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
            py, pxx = _peak(win)
            sy = py + max(cy - r, 0) - cy
            sx = pxx + max(cx - r, 0) - cx
            # image_i(p) ~ image_j(p - s): segment j is displaced by -s relative to i
            pairs.append((i, j))
            shifts.append((-sx * px, -sy * px))
            k += 1
            if k % max(1, total_pairs // segments) == 0:
                yield Progress(
                    segments + int(segments * k / total_pairs), 2 * segments, "correlating"
                )
    A = np.zeros((len(pairs), segments - 1))
    for row, (i, j) in enumerate(pairs):
        if j:
            A[row, j - 1] += 1
        if i:
            A[row, i - 1] -= 1
    b = np.asarray(shifts)
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    drift = np.vstack([[0.0, 0.0], sol])
    centres = np.array([frames[idx].mean() for idx in cuts])
    drift -= drift[0]
    result = DriftResult(df, centres, drift)
    d = result.drift_at(frames)
    out = df.copy()
    out["x_nm"] = x - d[:, 0]
    out["y_nm"] = y - d[:, 1]
    out.attrs = dict(df.attrs)
    result.data = out
    yield Progress(2 * segments, 2 * segments, "done")
    return result


def drift_correct(df: pd.DataFrame, **kwargs) -> DriftResult:
    """Blocking :func:`drift_correct_gen`."""
    from napari_nucleus_ai.core.progress import run_sync

    return run_sync(drift_correct_gen(df, **kwargs))
