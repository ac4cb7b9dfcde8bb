"""Localizations -> density images in true nanometres (Qt-free).

Three methods, as in Picasso and Locan:

``histogram``
    Localizations per pixel.
``gaussian``
    The histogram blurred by one fixed Gaussian (``sigma_nm``; default: the median
    localization precision, else one pixel).
``precision``
    Every localization drawn as a Gaussian of its own ``precision_nm``. Localizations
    are grouped by precision in narrow log-spaced bins (ratio :data:`PRECISION_STEP`),
    each group gets its bin's sigma (error below 7 %) through a cascade of small blurs.

Each image keeps the localization count (a pixel holds localizations, or its
share of them), so images at different pixel sizes compare. Geometry follows
napari and Locan: pixel ``i`` covers ``[lower + i*px, lower + (i+1)*px)``;
``scale = px`` and ``translate = lower + px/2`` put pixel centres where napari
draws them, so Points in nm overlay exactly. Lower edges snap to multiples of the
pixel size so renders at the same pixel size line up. Axis order is napari's:
``(z,) y, x``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError

METHODS = ("histogram", "gaussian", "precision")
Z_MODES = ("project", "stack", "color")
PRECISION_STEP = 1.15
MAX_PIXELS = 400_000_000
MAX_SIGMA_FACTOR = 5.0


@dataclass
class Rendered:
    """A rendered density image and where it sits, in nm.

    ``image`` is (y, x), (z, y, x) for ``z_mode="stack"`` or (y, x, 3) RGB for
    ``z_mode="color"``; ``scale``/``translate`` are per spatial axis (napari order).
    """

    image: np.ndarray
    scale: tuple
    translate: tuple
    pixel_size_nm: float
    bounds_nm: dict
    method: str = "gaussian"
    sigma_nm: float | None = None
    n_rendered: int = 0
    rgb: bool = False
    extra: dict = field(default_factory=dict)

    def layer_kwargs(self) -> dict:
        return {"scale": self.scale, "translate": self.translate, "rgb": self.rgb}


def _columns(df):
    x = np.asarray(df["x_nm"], dtype=np.float64)
    y = np.asarray(df["y_nm"], dtype=np.float64)
    z = np.asarray(df["z_nm"], dtype=np.float64) if "z_nm" in df else None
    return x, y, z


def grid(lo: float, hi: float, px: float) -> tuple[float, int]:
    """Lower edge (snapped to a multiple of ``px``) and bin count covering ``[lo, hi]``."""
    lower = np.floor(lo / px) * px
    n = int(np.floor((hi - lower) / px)) + 1
    return float(lower), max(n, 1)


def default_sigma_nm(df, pixel_size_nm: float) -> float:
    """Median localization precision (of at most ~4-8 M evenly spaced rows), else one pixel."""
    if "precision_nm" in df:
        p = np.asarray(df["precision_nm"])
        p = p[:: max(1, p.size // 4_000_000)].astype(float)
        p = p[np.isfinite(p) & (p > 0)]
        if p.size:
            return float(np.median(p))
    return float(pixel_size_nm)


def render_localizations(
    df,
    pixel_size_nm: float = 10.0,
    method: str = "gaussian",
    sigma_nm: float | None = None,
    bounds_nm: dict | None = None,
    z_mode: str = "project",
    z_pixel_size_nm: float | None = None,
    z_range_nm: tuple | None = None,
    colormap: str = "turbo",
) -> Rendered:
    """Render localizations into a density image.

    Parameters
    ----------
    df : DataFrame or mapping of arrays
        ``x_nm``, ``y_nm`` (and ``z_nm``, ``precision_nm`` when used).
    pixel_size_nm : float
        Display pixel (default 10 nm).
    method : {"histogram", "gaussian", "precision"}
    sigma_nm : float, optional
        Fixed blur of ``gaussian`` (default: median precision, else one pixel) and
        lateral fallback of ``precision`` for rows without a precision.
    bounds_nm : dict, optional
        ``{"x": [min, max], "y": [min, max], ("z": ...)}``; default: the data's.
        Localizations outside are not drawn.
    z_mode : {"project", "stack", "color"}
        3D data: sum over z, a (z, y, x) voxel stack, or an RGB image coloured by depth.
    z_pixel_size_nm : float, optional
        Voxel depth of ``stack`` (default ``max(5 * pixel, 50)`` nm).
    z_range_nm : (float, float), optional
        Depth range mapped onto the colormap for ``color`` (default: data range).

    Returns
    -------
    Rendered
    """
    if method not in METHODS:
        raise InputError(None, f"unknown render method {method!r}; use one of {METHODS}")
    if z_mode not in Z_MODES:
        raise InputError(None, f"unknown z mode {z_mode!r}; use one of {Z_MODES}")
    px = float(pixel_size_nm)
    if not px > 0:
        raise InputError(None, f"pixel size must be positive (got {pixel_size_nm})")
    x, y, z = _columns(df)
    finite = np.isfinite(x).all() and np.isfinite(y).all() and (z is None or np.isfinite(z).all())
    if not finite:  # tables from readers are clean; raw DataFrames may not be
        ok = np.isfinite(x) & np.isfinite(y) & (True if z is None else np.isfinite(z))
        df = df[ok] if hasattr(df, "loc") else {k: np.asarray(v)[ok] for k, v in df.items()}
        x, y, z = _columns(df)
    if z is None and z_mode != "project":
        z_mode = "project"
    bounds = _bounds(x, y, z if z_mode == "stack" else None, bounds_nm, px)
    x0, nx = grid(*bounds["x"], px)
    y0, ny = grid(*bounds["y"], px)
    shape = [ny, nx]
    lowers = [y0, x0]
    scales = [px, px]
    coords = [y, x]
    if z_mode == "stack":
        pz = float(z_pixel_size_nm or max(5 * px, 50.0))
        z0, nz = grid(*bounds["z"], pz)
        shape.insert(0, nz)
        lowers.insert(0, z0)
        scales.insert(0, pz)
        coords.insert(0, z)
    if int(np.prod(shape)) * (3 if z_mode == "color" else 1) > MAX_PIXELS:
        raise InputError(
            None,
            f"a {'x'.join(map(str, shape))} image is too large; use larger pixels "
            "or a smaller region",
        )
    sigma = float(sigma_nm) if sigma_nm else default_sigma_nm(df, px)
    simple = method in ("histogram", "gaussian") or "precision_nm" not in df
    if z_mode != "color" and simple:
        # fast path: threaded histogram without per-row bookkeeping
        image, n_rendered = _fast_hist(coords, lowers, scales, shape, check=bool(bounds_nm))
        if method != "histogram":
            s = sigma / px
            pz_sigma = None if z_mode != "stack" else max(sigma * 2.5, scales[0] / 2) / scales[0]
            image = _blur(image, (pz_sigma, s, s) if len(shape) == 3 else s)
        return _result(image, scales, lowers, shape, px, method, sigma, n_rendered, z_mode)
    flat, keep = _flat_index(coords, lowers, scales, shape)
    if z_mode == "color":
        image = _render_color(df, z, flat, keep, shape, px, method, sigma, z_range_nm, colormap)
    else:
        pz_sigma = None if z_mode != "stack" else max(sigma * 2.5, scales[0] / 2) / scales[0]
        image = _render_scalar(df, flat, keep, shape, px, method, sigma, pz_sigma)
    n_rendered = int(keep.sum()) if keep is not None else len(x)
    return _result(image, scales, lowers, shape, px, method, sigma, n_rendered, z_mode)


def _result(image, scales, lowers, shape, px, method, sigma, n_rendered, z_mode) -> Rendered:
    translate = tuple(lo + s / 2 for lo, s in zip(lowers, scales, strict=True))
    y0, x0 = lowers[-2], lowers[-1]
    out_bounds = {"y": [y0, y0 + shape[-2] * px], "x": [x0, x0 + shape[-1] * px]}
    if z_mode == "stack":
        out_bounds["z"] = [lowers[0], lowers[0] + shape[0] * scales[0]]
    return Rendered(
        image=image,
        scale=tuple(scales),
        translate=translate,
        pixel_size_nm=px,
        bounds_nm=out_bounds,
        method=method,
        sigma_nm=None if method == "histogram" else sigma,
        n_rendered=int(n_rendered),
        rgb=z_mode == "color",
        extra={"z_mode": z_mode},
    )


THREAD_MIN_ROWS = 1_000_000
#: rows per block of the pixel-index pass (its temporaries stay in the CPU cache)
BLOCK_ROWS = 1 << 16


def _fast_hist(coords, lowers, scales, shape, check: bool):
    """Histogram of the localizations: one flat pixel index, one :func:`numpy.bincount`.

    The index is computed block by block (small temporaries, on up to 4 threads for
    large tables: numpy frees the GIL) into one array; a single ``bincount`` then fills
    one count array, as by hand. Without ``check`` the grid was built from the data, so
    every row is inside; indices are only clipped against rounding at the upper edge.
    """
    import os

    n = len(coords[0])
    size = int(np.prod(shape))
    flat = np.empty(n, np.intp)
    keep = np.empty(n, bool) if check else None
    axes = list(reversed(list(zip(coords, lowers, scales, shape, strict=True))))

    def work(start):
        sl = slice(start, min(start + BLOCK_ROWS, n))
        out, inside, stride = flat[sl], None, 1
        for v, lo, s, m in axes:
            f = v[sl] - lo
            f *= 1.0 / s
            if check:
                ok = (f >= 0) & (f < m)
                inside = ok if inside is None else inside & ok
                np.clip(f, 0, m - 1, out=f)
            i = f.astype(np.intp)
            if not check:
                np.minimum(i, m - 1, out=i)
            if stride == 1:
                out[...] = i
            else:
                i *= stride
                out += i
            stride *= m
        if check:
            keep[sl] = inside

    starts = range(0, n, BLOCK_ROWS)
    k = min(os.cpu_count() or 1, 4) if n >= THREAD_MIN_ROWS else 1
    if k == 1:
        for start in starts:
            work(start)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(k) as ex:
            list(ex.map(work, starts))
    if keep is not None and not keep.all():
        flat = flat[keep]
    image = np.bincount(flat, minlength=size).astype(np.float32).reshape(shape)
    return image, flat.size


def _bounds(x, y, z, bounds_nm, px) -> dict:
    out = {}
    for name, v in (("x", x), ("y", y), ("z", z)):
        if v is None:
            continue
        if bounds_nm and name in bounds_nm and bounds_nm[name] is not None:
            lo, hi = (float(b) for b in bounds_nm[name])
        elif v.size:
            lo, hi = float(v.min()), float(v.max())
        else:
            lo, hi = 0.0, px
        if hi < lo:
            lo, hi = hi, lo
        out[name] = (lo, hi)
    return out


def _flat_index(coords, lowers, scales, shape):
    """Flat pixel index of every localization; ``keep`` masks those inside (None = all)."""
    keep = None
    flat = None
    stride = 1
    for v, lo, s, n in reversed(list(zip(coords, lowers, scales, shape, strict=True))):
        f = (v - lo) * (1.0 / s)
        inside = (f >= 0) & (f < n)
        if not inside.all():
            keep = inside if keep is None else keep & inside
        i = f.astype(np.intp)
        flat = i * stride if flat is None else flat + i * stride
        stride *= n
    if keep is not None:
        flat = flat[keep]
    return flat, keep


def _hist(flat, shape, weights=None) -> np.ndarray:
    counts = np.bincount(flat, weights=weights, minlength=int(np.prod(shape)))
    return counts.astype(np.float32, copy=False).reshape(shape)


def _blur(image, sigma_px):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma_px, mode="constant", truncate=4.0)


def _render_scalar(df, flat, keep, shape, px, method, sigma, z_sigma_px, weights=None):
    if method == "precision" and "precision_nm" in df:
        return _render_precision(df, flat, keep, shape, px, sigma, z_sigma_px, weights)
    image = _hist(flat, shape, weights)
    if method == "histogram":
        return image
    s = sigma / px
    return _blur(image, (z_sigma_px, s, s) if len(shape) == 3 else s)


def _render_precision(df, flat, keep, shape, px, sigma, z_sigma_px, weights):
    prec = np.asarray(df["precision_nm"], dtype=np.float64)
    if keep is not None:
        prec = prec[keep]
    prec = np.where(np.isfinite(prec) & (prec > 0), prec, sigma)
    # Sub-pixel precisions look like points: group them with half a pixel. Absurd
    # precisions (failed fits report kilometres) are capped at MAX_SIGMA_FACTOR x the
    # median so one bad row cannot blur the whole field.
    cap = MAX_SIGMA_FACTOR * float(np.median(prec)) if prec.size else sigma
    sig_px = np.clip(prec, None, cap) / px
    sig_px = np.maximum(sig_px, 0.5)
    step = np.log(PRECISION_STEP)
    group = np.floor(np.log(sig_px) / step).astype(np.intp)
    # Cascade from the widest group down: blurring the running sum by
    # sqrt(s_prev^2 - s^2) before adding the next group gives every group exactly its
    # own sigma (Gaussian variances add) with small kernels only.
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    levels = np.unique(sorted_groups)
    starts = np.searchsorted(sorted_groups, levels, side="left")
    ends = np.searchsorted(sorted_groups, levels, side="right")
    acc, prev = None, None
    for g, a, b in zip(levels[::-1], starts[::-1], ends[::-1], strict=True):
        s = float(np.exp((g + 0.5) * step))
        idx = order[a:b]
        part = _hist(flat[idx], shape, None if weights is None else weights[idx])
        if acc is None:
            acc = part
        else:
            d = float(np.sqrt(prev**2 - s**2))
            acc = _blur(acc, (0, d, d) if len(shape) == 3 else d)
            acc += part
        prev = s
    return _blur(acc, (z_sigma_px, prev, prev) if len(shape) == 3 else prev)


def _render_color(df, z, flat, keep, shape, px, method, sigma, z_range_nm, colormap):
    from matplotlib import colormaps

    zz = z if keep is None else z[keep]
    lo, hi = z_range_nm if z_range_nm else (float(zz.min()), float(zz.max())) if zz.size else (0, 1)
    t = np.clip((zz - lo) / ((hi - lo) or 1.0), 0, 1)
    rgba = colormaps[colormap](t)
    sub = (
        df
        if keep is None
        else {"precision_nm": np.asarray(df["precision_nm"])[keep]}
        if "precision_nm" in df
        else {}
    )
    chans = [
        _render_scalar(sub, flat, None, shape, px, method, sigma, None, weights=rgba[:, i])
        for i in range(3)
    ]
    density = _render_scalar(sub, flat, None, shape, px, method, sigma, None)
    rgb = np.stack(chans, axis=-1) / np.maximum(density, 1e-12)[..., None]
    top = np.percentile(density[density > 0], 99.5) if np.any(density > 0) else 1.0
    return (rgb * np.clip(density / top, 0, 1)[..., None]).astype(np.float32)


# ------------------------------------------------------------------ pyramids and zoom
def pyramid(image: np.ndarray, min_size: int = 1024) -> list[np.ndarray]:
    """Mean-pooled 2x levels (largest first) until the largest side is below ``min_size``."""
    levels = [image]
    spatial = image.ndim - (1 if image.ndim == 3 and image.shape[-1] == 3 else 0)
    while max(levels[-1].shape[spatial - 2 : spatial]) > min_size:
        a = levels[-1]
        ny, nx = (a.shape[spatial - 2] // 2) * 2, (a.shape[spatial - 1] // 2) * 2
        a = a[..., :ny, :nx] if spatial == a.ndim else a[..., :ny, :nx, :]
        if spatial == a.ndim:
            a = a.reshape(*a.shape[:-2], ny // 2, 2, nx // 2, 2).mean(axis=(-3, -1))
        else:
            a = a.reshape(*a.shape[:-3], ny // 2, 2, nx // 2, 2, 3).mean(axis=(-4, -2))
        levels.append(a.astype(image.dtype, copy=False))
    return levels


def zoom_pixel_size(view_min_nm, view_max_nm, canvas_px, base_pixel_nm, min_pixel_nm=1.0):
    """Pixel size that matches the screen for a view, clamped to ``[min_pixel_nm, base]``."""
    extent = max(
        float(view_max_nm[-1]) - float(view_min_nm[-1]),
        float(view_max_nm[-2]) - float(view_min_nm[-2]),
    )
    want = extent / max(1, int(canvas_px))
    return float(min(base_pixel_nm, max(min_pixel_nm, want)))


def render_view(
    df,
    view_min_nm,
    view_max_nm,
    canvas_px: int,
    base_pixel_nm: float = 10.0,
    min_pixel_nm: float = 1.0,
    **kwargs,
) -> Rendered | None:
    """Re-render the visible region (napari ``(y, x)`` corners in nm) at screen-matched pixels.

    Returns None when the screen would not show finer detail than ``base_pixel_nm``
    (the base layer is already enough). This is the core of the nanoscale zoom.
    """
    px = zoom_pixel_size(view_min_nm, view_max_nm, canvas_px, base_pixel_nm, min_pixel_nm)
    if px >= base_pixel_nm * 0.75:
        return None
    bounds = {"y": [view_min_nm[-2], view_max_nm[-2]], "x": [view_min_nm[-1], view_max_nm[-1]]}
    x, y, _ = _columns(df)
    inside = (
        (x >= bounds["x"][0])
        & (x <= bounds["x"][1])
        & (y >= bounds["y"][0])
        & (y <= bounds["y"][1])
    )
    sub = df[inside] if hasattr(df, "loc") else {k: np.asarray(v)[inside] for k, v in df.items()}
    kwargs.setdefault("sigma_nm", kwargs.get("sigma_nm") or default_sigma_nm(df, base_pixel_nm))
    return render_localizations(sub, pixel_size_nm=px, bounds_nm=bounds, **kwargs)
