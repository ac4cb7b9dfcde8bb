"""One place for napari API differences between the versions the plugin supports."""

from __future__ import annotations


def camera(viewer):
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before.

    Parameters
    ----------
    viewer : napari.Viewer

    Returns
    -------
    napari.components.Camera
    """
    scene = getattr(viewer, "scene", None)
    if scene is not None and hasattr(scene, "camera"):
        return scene.camera
    return viewer.camera


def world_factor(viewer, layer) -> float:
    """Multiplier from ``layer``'s world units to the viewer's world units.

    Since napari 0.9, a viewer whose layers have compatible units (nm and um, say) draws
    them all in the smallest unit: camera centre and zoom are then in that unit, while each
    layer's ``scale``, ``extent`` and our cell tables stay in the layer's own unit. Returns
    1.0 when napari does not use units (one unit, pixels, or inconsistent units).
    """
    viewer_units = getattr(viewer.layers, "units", None)
    layer_units = getattr(layer, "units", None)
    if not viewer_units or not layer_units:
        return 1.0
    try:
        return float((1 * layer_units[-1]).to(viewer_units[-1]).magnitude)
    except Exception:  # noqa: BLE001 - pint DimensionalityError, unregistered units
        return 1.0


def view_of(viewer, layer) -> tuple:
    """``(center, zoom)`` of the camera in ``layer``'s world units (zoom: screen px per unit)."""
    f = world_factor(viewer, layer)
    cam = camera(viewer)
    return tuple(float(c) / f for c in cam.center), float(cam.zoom) * f


def set_view(viewer, layer, center=None, zoom=None) -> None:
    """Move the camera to ``center`` (trailing axes, in ``layer``'s world units) and ``zoom``
    (screen pixels per unit of ``layer``), whatever unit the viewer draws in."""
    f = world_factor(viewer, layer)
    cam = camera(viewer)
    if center is not None:
        full = list(cam.center)
        c = [float(v) * f for v in center]
        full[-len(c) :] = c[-len(full) :]
        cam.center = tuple(full)
    if zoom is not None:
        cam.zoom = float(zoom) / f


def canvas_hw(viewer) -> tuple[float, float]:
    """The canvas size in screen pixels ``(height, width)``: what the camera shows.

    napari 0.9 has no public canvas size (and no ``_canvas_size``); the Qt canvas
    widget's size is what is on screen.
    """
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "viewbox_size"):
        return tuple(float(v) for v in canvas.viewbox_size(viewer.layers))
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    native = getattr(getattr(qt_viewer, "canvas", None), "native", None)
    if native is not None and native.width() > 0:
        return float(native.height()), float(native.width())
    size = getattr(canvas, "size", None)
    if size:
        return float(size[0]), float(size[1])
    return 600.0, 800.0


def warm_label_colormap(colormap, labels) -> None:
    """Compile napari's label-to-texture loop for ``colormap`` and ``labels``'s dtype, here.

    napari maps a Labels layer's values through a numba function compiled on first use for
    each (labels dtype, texture dtype) pair, which can take seconds when its on-disk cache
    misses. Called from a worker thread with the colormap of a result about to be shown,
    that compilation happens off the GUI thread. A napari without this private function
    (``_data_to_texture``) is left alone: it is only a warm-up.
    """
    import numpy as np

    sample = np.ascontiguousarray(np.asarray(labels)[..., :2, :2])
    try:
        colormap._data_to_texture(sample)
    except Exception:  # noqa: BLE001 - a warm-up: any failure shows up on the GUI thread
        return
