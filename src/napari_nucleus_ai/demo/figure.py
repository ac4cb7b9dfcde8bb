"""A publication-quality PNG of the current view: the canvas, a scale bar and a legend of classes.

:func:`compose_figure` is the Qt-free core: it takes a rendered canvas image (an RGB(A)
array), the physical size of one of its pixels and the classes with their colours, and
draws with matplotlib, at the image's own pixel grid (nothing resampled), a scale bar of a
round length (1, 2 or 5 times a power of ten, in nm below 1 um, in um above) in the lower
right corner and, in a white panel to the right of the image, a legend: a colour patch, the
class and its number of cells. :func:`save_view_figure` gathers all of that from a napari
viewer (``viewer.screenshot(canvas_only=True)`` of the current view at a higher zoom, the
camera's zoom and unit, the classes layer's colours and cell table) and writes the PNG atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Fraction of the image width a scale bar aims at (it is rounded down to a round length).
BAR_FRACTION = 0.2


@dataclass(frozen=True)
class LegendEntry:
    """One class of the legend: its name, colour (any matplotlib colour) and cell count."""

    name: str
    colour: str
    count: int | None = None

    @property
    def text(self) -> str:
        return self.name if self.count is None else f"{self.name} ({self.count})"


@dataclass(frozen=True)
class ScaleBar:
    """A round length and what it measures in image pixels."""

    nm: float
    pixels: float

    @property
    def label(self) -> str:
        if self.nm >= 1e6:
            return f"{self.nm / 1e6:g} mm"
        if self.nm >= 1000:
            return f"{self.nm / 1000:g} µm"
        return f"{self.nm:g} nm"


def scale_bar(nm_per_pixel: float, width: int, fraction: float = BAR_FRACTION) -> ScaleBar:
    """The round length (1, 2 or 5 x 10^k nm) closest below ``fraction`` of ``width`` pixels.

    Parameters
    ----------
    nm_per_pixel : float
        Physical size of one image pixel, in nm (> 0).
    width : int
        Image width in pixels.
    fraction : float
        Largest part of the width the bar may take.

    Returns
    -------
    ScaleBar
    """
    if not nm_per_pixel > 0 or width < 1:
        raise ValueError(f"a scale bar needs a positive pixel size and width, not {nm_per_pixel}")
    target = fraction * width * nm_per_pixel
    power = 10.0 ** math.floor(math.log10(target))
    nice = max(m * power for m in (1, 2, 5) if m * power <= target * (1 + 1e-9))
    return ScaleBar(nm=nice, pixels=nice / nm_per_pixel)


def _bar_colour(image: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """White on a dark corner, black on a light one (a smear is light, a render dark)."""
    r0, r1, c0, c1 = box
    corner = image[max(r0, 0) : r1, max(c0, 0) : c1, :3].astype(float)
    if corner.size == 0:
        return "white"
    if corner.max() > 1.0:
        corner = corner / 255.0
    luminance = corner @ np.array([0.2126, 0.7152, 0.0722])
    return "black" if float(np.median(luminance)) > 0.5 else "white"


def compose_figure(
    image: np.ndarray,
    nm_per_pixel: float | None,
    legend: Sequence[LegendEntry] = (),
    *,
    title: str | None = None,
    dpi: float | None = None,
    font_px: float | None = None,
) -> tuple[np.ndarray, ScaleBar | None]:
    """The figure as an RGBA ``uint8`` array, and the scale bar drawn (``None``: none).

    Parameters
    ----------
    image : ndarray
        The rendered view, ``(H, W, 3)`` or ``(H, W, 4)``, ``uint8`` or floats in [0, 1].
        It fills the left part of the figure pixel for pixel.
    nm_per_pixel : float or None
        Physical size of one pixel of ``image`` in nm; ``None`` (no physical size): no bar.
    legend : sequence of LegendEntry
        The classes, in order; empty: no legend panel.
    title : str, optional
        A line above the legend.
    dpi : float, optional
        Recorded in the PNG; by default the image height / 8 (an 8-inch-tall figure).
    font_px : float, optional
        Text height in pixels; by default 2.2 % of the image height (at least 12).

    Returns
    -------
    (ndarray, ScaleBar or None)
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"the view must be an (H, W, 3|4) image, not {image.shape}")
    h, w = image.shape[:2]
    dpi = float(dpi or max(72.0, h / 8.0))
    font_px = float(font_px or max(12.0, 0.022 * h))
    pt = font_px * 72.0 / dpi  # matplotlib sizes text in points
    lines = [e.text for e in legend] + ([title] if title else [])
    panel = 0
    if legend:  # patch + gap + the longest line (DejaVu Sans: ~0.62 em per character)
        panel = int(math.ceil(font_px * (4.0 + 0.62 * max(len(s) for s in lines))))
    fig = Figure(figsize=((w + panel) / dpi, h / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0, 0, w / (w + panel), 1))
    ax.set_axis_off()
    ax.imshow(image, interpolation="none", extent=(0, w, h, 0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    bar = None
    if nm_per_pixel:
        bar = scale_bar(float(nm_per_pixel), w)
        thick = max(3.0, round(h / 150.0))
        right, bottom = w - round(0.04 * w), h - round(0.05 * h)
        left = right - bar.pixels
        colour = _bar_colour(image, (int(bottom - 3 * font_px), h, int(left), w))
        outline = "black" if colour == "white" else "white"
        ax.add_patch(
            Rectangle(
                (left, bottom - thick),
                bar.pixels,
                thick,
                facecolor=colour,
                edgecolor="none",
                antialiased=False,
            )
        )
        text = ax.text(
            left + bar.pixels / 2,
            bottom - thick - 0.4 * font_px,
            bar.label,
            color=colour,
            ha="center",
            va="bottom",
            fontsize=pt,
        )
        text.set_path_effects([patheffects.withStroke(linewidth=pt / 6, foreground=outline)])
    if legend:
        side = fig.add_axes((w / (w + panel), 0, panel / (w + panel), 1))
        side.set_axis_off()
        side.set_xlim(0, panel)
        side.set_ylim(h, 0)
        y = 1.5 * font_px
        if title:
            side.text(font_px, y, title, fontsize=pt, fontweight="bold", va="center")
            y += 1.8 * font_px
        for entry in legend:
            side.add_patch(
                Rectangle(
                    (font_px, y - 0.6 * font_px),
                    1.2 * font_px,
                    1.2 * font_px,
                    facecolor=entry.colour,
                    edgecolor="none",
                )
            )
            side.text(2.8 * font_px, y, entry.text, fontsize=pt, va="center")
            y += 1.8 * font_px
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy(), bar


def write_png(path, figure: np.ndarray, dpi: float | None = None) -> Path:
    """Write an RGBA array as PNG (atomically; ``dpi`` recorded); returns the path."""
    from PIL import Image

    from napari_nucleus_ai.core.files import atomic_path

    path = Path(path)
    dpi = float(dpi or max(72.0, figure.shape[0] / 8.0))
    with atomic_path(path) as tmp:
        Image.fromarray(figure).save(tmp, format="PNG", dpi=(dpi, dpi))
    return path


# ------------------------------------------------------------------ from a viewer


def classes_layer(viewer):
    """The classes layer to explain: the active one when it is one, else the top visible one.

    A classes layer is a Labels layer whose cell table has a ``class`` column (what the
    Classifier and Review docks show).
    """
    from napari.layers import Labels

    def is_classes(ly) -> bool:
        feats = getattr(ly, "features", None)
        return isinstance(ly, Labels) and feats is not None and "class" in feats.columns

    active = viewer.layers.selection.active
    if active is not None and is_classes(active) and active.visible:
        return active
    return next((ly for ly in reversed(viewer.layers) if is_classes(ly) and ly.visible), None)


def legend_of(layer) -> list[LegendEntry]:
    """The legend of a classes layer: each class with the colour it is drawn in and its count.

    Classes come in the model's order (its card) when the layer records one, then any other.
    """
    from matplotlib.colors import to_hex

    if layer is None:
        return []
    feats = layer.features
    counts = feats["class"].astype(str).value_counts()
    order = [c for c in _card_classes(layer) if c in counts.index]
    order += [c for c in counts.index if c not in order]
    colour_of = {}
    cmap = getattr(layer.colormap, "color_dict", {}) or {}
    for label, cls in zip(feats["label"], feats["class"].astype(str), strict=True):
        if cls not in colour_of and int(label) in cmap:
            colour_of[cls] = to_hex(np.asarray(cmap[int(label)], dtype=float)[:3])
    if not colour_of:  # a layer drawn by another colormap: ask it per label
        for label, cls in zip(feats["label"], feats["class"].astype(str), strict=True):
            colour_of.setdefault(cls, to_hex(np.asarray(layer.get_color(int(label)))[:3]))
    return [LegendEntry(c, colour_of.get(c, "#9e9e9e"), int(counts[c])) for c in order]


def _card_classes(layer) -> list[str]:
    """The class names of the model card a classes layer records (in the card's order)."""
    from collections.abc import Mapping

    card = (layer.metadata or {}).get("model_card")
    classes = card.get("classes") if isinstance(card, Mapping) else getattr(card, "classes", None)
    names = []
    for c in classes or []:
        name = c.get("name") if isinstance(c, Mapping) else getattr(c, "name", c)
        names.append(str(name))
    return names


def view_nm_per_pixel(viewer) -> float | None:
    """Physical size of a screen pixel of the current view, in nm (``None``: none).

    The camera zoom is screen pixels per world unit, and the world unit is the viewer's
    (``viewer.layers.units``: um when :func:`~napari_nucleus_ai.demo.units.show_lengths_in`
    is on); ``None`` when the layers have no physical size or the view is 3-D.
    """
    from napari_nucleus_ai.core.units import nm_per
    from napari_nucleus_ai.widgets._compat import camera

    units = viewer.layers.units
    if not units or viewer.dims.ndisplay != 2:
        return None
    per = nm_per(str(units[-1]))
    return None if per is None else per / float(camera(viewer).zoom)


@dataclass(frozen=True)
class View:
    """What a figure of the view needs, taken from the viewer on its own thread."""

    image: np.ndarray
    nm_per_pixel: float | None
    legend: tuple[LegendEntry, ...]
    title: str | None


def grab_view(viewer, *, scale: float = 2.0, title: str | None = None) -> View:
    """Shoot the current view at ``scale`` x the screen's pixels, with what its figure needs.

    napari's ``screenshot(scale=...)`` enlarges the canvas and shows more of the world at the
    same zoom; here the zoom is multiplied too, so the shot is the view on screen with
    ``scale`` x the pixels. napari's own scale bar and the canvas caption (the tour's) are
    hidden for the shot; zoom and overlays are given back after.
    """
    from napari_nucleus_ai.widgets._compat import camera

    cam = camera(viewer)
    overlays = [viewer.canvas.overlays.scale_bar, viewer.canvas.overlays.text]
    shown, zoom = [o.visible for o in overlays], cam.zoom
    try:
        for o in overlays:
            o.visible = False
        cam.zoom = zoom * scale
        nm = view_nm_per_pixel(viewer)
        shot = viewer.screenshot(canvas_only=True, scale=scale, flash=False)
    finally:
        cam.zoom = zoom
        for o, on in zip(overlays, shown, strict=True):
            o.visible = on
    layer = classes_layer(viewer)
    if title is None and layer is not None:
        title = (layer.metadata or {}).get("model") or None
    return View(np.asarray(shot), nm, tuple(legend_of(layer)), title)


def figure_job(path, view: View):
    """Core generator: compose ``view``'s figure and write it to ``path``.

    Returns ``(path, ScaleBar or None, legend)``.
    """
    from napari_nucleus_ai.core.progress import Progress

    yield Progress(0, 2, "composing")
    figure, bar = compose_figure(view.image, view.nm_per_pixel, view.legend, title=view.title)
    yield Progress(1, 2, "writing")
    out = write_png(path, figure)
    yield Progress(2, 2, "written")
    return out, bar, list(view.legend)


def save_view_figure(viewer, path, *, scale: float = 2.0, title: str | None = None):
    """Write the current view of ``viewer`` as a PNG with a scale bar and a legend.

    Returns ``(path, ScaleBar or None, legend)``.
    """
    from napari_nucleus_ai.core.progress import run_sync

    return run_sync(figure_job(path, grab_view(viewer, scale=scale, title=title)))
