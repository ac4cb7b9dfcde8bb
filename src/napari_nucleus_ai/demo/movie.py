"""A short movie from the viewer: a zoom into a STORM nucleus, with napari-animation.

``napari-nucleus-ai demo --movie out.mp4`` (needs the ``[movie]`` extra: napari-animation
and imageio-ffmpeg) opens the simulated STORM nuclei, then flies from the whole field
into one nucleus, holds there while the view is re-rendered from the localizations at
screen-matched pixels (the nanoscale zoom), and writes an MP4 (or GIF, by suffix).
The file is written whole or not at all, and the viewer is given back as it was (layers
shown, camera, scale bar), so the Present dock can record one in the middle of a session.
The frames are rendered by the viewer's canvas, on the thread that runs the viewer.
"""

from __future__ import annotations

from pathlib import Path

EXTRA_HINT = "the movie needs napari-animation: pip install 'napari-nucleus-ai[movie]'"


def zoom_movie(viewer, out, *, fps: int = 20, seconds: float = 6.0) -> Path:
    """Record a fly-in to one STORM nucleus of ``viewer`` into ``out``; returns the path."""
    try:
        from napari_animation import Animation
    except ImportError as e:  # pragma: no cover - the optional extra
        raise RuntimeError(EXTRA_HINT) from e
    from napari_nucleus_ai.core.files import atomic_path
    from napari_nucleus_ai.demo.tour import _read, _storm_layer
    from napari_nucleus_ai.widgets._compat import camera

    cam = camera(viewer)
    before = (
        {id(ly): ly.visible for ly in viewer.layers},
        tuple(cam.center),
        cam.zoom,
        viewer.canvas.overlays.scale_bar.visible,
    )
    if _storm_layer(viewer) is None:
        _read(viewer)
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            _record(viewer, Animation, _storm_layer(viewer), tmp, fps, seconds)
    finally:
        shown, centre, zoom, bar = before
        for layer in viewer.layers:
            layer.visible = shown.get(id(layer), layer.visible)
        cam.center, cam.zoom = centre, zoom
        viewer.canvas.overlays.scale_bar.visible = bar
    return out


def _record(viewer, Animation, storm, out: Path, fps: int, seconds: float) -> None:
    from napari_nucleus_ai.widgets._compat import set_view

    df = storm.metadata["localizations"]
    first = df[df["nucleus"] == 1] if "nucleus" in df else df
    centre = (float(first["y_nm"].median()), float(first["x_nm"].median()))
    for layer in viewer.layers:
        layer.visible = layer is storm
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.reset_view()
    steps = max(2, int(fps * seconds / 3))
    animation = Animation(viewer)
    animation.capture_keyframe(steps=1)
    set_view(viewer, storm, center=centre, zoom=1 / 40.0)  # the nucleus fills the view
    animation.capture_keyframe(steps=steps)
    set_view(viewer, storm, center=centre, zoom=1 / 6.0)  # 6 nm per screen pixel
    animation.capture_keyframe(steps=steps)
    animation.capture_keyframe(steps=steps)  # hold
    animation.animate(str(out), fps=fps, canvas_only=True)
