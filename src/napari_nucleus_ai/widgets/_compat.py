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
