"""Nanoscale zoom for the Localizations dock: re-render the visible region at finer pixels.

The computation is Qt-free (:func:`napari_nucleus_ai.localizations.render.render_view`, driven by
:func:`napari_nucleus_ai.localizations.pipeline.zoom_gen`); this mixin only watches
the camera (250 ms debounce), works out the visible region from public layer and
camera state, and shows the result as a ``<layer> [zoom]`` image layer; the status line
then describes that latest render (the layer's render and the zoom's).
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.widgets._compat import view_of

MAX_SCREEN_PX = 4096


class NanoscaleZoom:
    """Mixin for :class:`~napari_nucleus_ai.widgets.localizations.LocalizationsWidget`.

    Expects the :class:`~napari_nucleus_ai.widgets._base.DockBase` of the dock
    (``viewer``, ``sync``, ``start_job``, ``busy``), ``self._zoom_timer``, ``self.zoom`` (a
    CheckBox), ``self.status`` (a Label), ``self._render_text`` (layer name -> its last
    render's description) and ``self._current()``.
    """

    def _on_camera(self, _=None):
        if not self.zoom.value:
            return
        if self.sync:
            self.update_zoom()
            return
        from qtpy.QtCore import QTimer

        if self._zoom_timer is None:
            self._zoom_timer = QTimer(self.native)  # dies with the dock
            self._zoom_timer.setSingleShot(True)
            self._zoom_timer.timeout.connect(self.update_zoom)
        self._zoom_timer.start(250)

    def visible_region(self, layer):
        """``(min_yx, max_yx, screen_px)`` of the layer's visible part in world units (nm).

        Uses the public ``layer.corner_pixels`` (visible data pixels of the shown level)
        and ``camera.zoom`` (screen pixels per nm), so no private canvas size is needed.
        """
        (*_, cy, cx), zoom = view_of(self.viewer, layer)
        corners = np.asarray(layer.corner_pixels, float)[:, -2:]
        scale = np.asarray(layer.scale, float)[-2:]
        if layer.multiscale:
            scale = scale * np.asarray(layer.downsample_factors[layer.data_level], float)[-2:]
        translate = np.asarray(layer.translate, float)[-2:]
        lo = translate + (corners[0] - 0.5) * scale
        hi = translate + (corners[1] + 0.5) * scale
        c = np.array([cy, cx], float)
        if not np.all(hi > lo):  # nothing drawn yet: centre of the camera, 800 px
            lo, hi = c - 400 / zoom, c + 400 / zoom
        # No screen is wider than MAX_SCREEN_PX: if the corners are stale (canvas not
        # drawn yet), keep to that much around the camera centre.
        half = MAX_SCREEN_PX / 2 / zoom
        lo, hi = np.maximum(lo, c - half), np.minimum(hi, c + half)
        if not np.all(hi > lo):
            lo, hi = c - half, c + half
        return tuple(lo), tuple(hi), int(np.ceil(float(np.max(hi - lo)) * zoom))

    def update_zoom(self):
        """Re-render the visible region of the selected layer at finer pixels (or hide it)."""
        from napari_nucleus_ai.localizations.pipeline import zoom_gen

        layer = self._current()
        if layer is None or layer.rgb or layer.ndim != 2:
            return None
        zname = f"{layer.name} [zoom]"
        lo, hi, canvas = self.visible_region(layer)
        base = float((layer.metadata.get("render") or {}).get("pixel_size_nm", layer.scale[-1]))

        def show(r):
            if r is None or len(r.image) == 0:
                if zname in self.viewer.layers:
                    self.viewer.layers[zname].visible = False
                return
            if zname in self.viewer.layers:
                z = self.viewer.layers[zname]
                z.data, z.scale, z.translate, z.visible = r.image, r.scale, r.translate, True
            else:
                z = self.viewer.add_image(
                    r.image,
                    name=zname,
                    scale=r.scale,
                    translate=r.translate,
                    colormap=layer.colormap,
                    blending=self._zoom_blending(layer),
                    units="nm",
                    metadata={"zoom_of": layer.name},
                )
            from napari_nucleus_ai.localizations.layers import contrast_limits

            z.contrast_limits = contrast_limits(r.image)
            if not self.busy:  # a full render running will say what it made
                self.status.value = self.zoom_status(layer, base, r)

        sigma = (layer.metadata.get("render") or {}).get("sigma_nm")
        method = (layer.metadata.get("render") or {}).get("method", "gaussian")
        return self.start_job(  # in the background: the dock's buttons stay usable
            zoom_gen,
            layer.metadata["localizations"],
            lo,
            hi,
            canvas,
            base,
            on_result=show,
            description="zoom",
            busy=False,
            method=method,
            sigma_nm=sigma,
        )

    def zoom_status(self, layer, base_px: float, r) -> str:
        """What is shown now: the layer's last render, then the zoom's re-render."""
        shown = getattr(self, "_render_text", {}).get(layer.name) or (
            f"{len(layer.metadata['localizations']):,} localizations at {base_px:g} nm"
        )
        return f"{shown}; zoom: {r.n_rendered:,} in view at {r.pixel_size_nm:g} nm"

    def _zoom_blending(self, layer) -> str:
        """Cover the coarse layer when it is the only one shown; add up with other channels."""
        shown = [
            ly
            for ly in self.viewer.layers
            if ly.visible
            and ly is not layer
            and (ly.metadata or {}).get("localizations") is not None
        ]
        return "additive" if shown else "translucent"
