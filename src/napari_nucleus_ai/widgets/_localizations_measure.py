"""The Measure section of the Localizations dock: merging, NeNA, FRC, clustering.

Thin: the work is :func:`napari_nucleus_ai.localizations.analysis.measure.measure_gen`
(the ``measure`` subcommand runs the same generator) started with ``start_job``
(progress bar, Cancel). The numeric boxes take their ranges from the ``measure``
command's schema (:data:`napari_nucleus_ai.core.params.COMMANDS`). Results: the numbers
on the section's result line, the NeNA histogram with its fit and the FRC curve with the
1/7 threshold in a plot, and a Points layer ``<layer> clusters`` coloured by cluster
(noise grey) with the cluster table in its ``features``.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.widgets._figure import DockFigure


def roi_nm(shapes) -> tuple[list, list]:
    """An ROI Shapes layer's shapes in the localizations' frame: nm world coordinates.

    A Shapes layer drawn over a render may carry its own scale, translation and unit
    (napari's *New shapes* button gives it the viewer's, e.g. um at 0.02 per data unit):
    its vertices are mapped to world coordinates and converted to nm. A unit-less
    (pixel) layer is taken to be drawn in nm.

    Returns
    -------
    (list of (N, D) arrays, list of shape types)
    """
    scale = np.asarray(shapes.scale, float)
    translate = np.asarray(shapes.translate, float)
    factor = 1.0
    units = getattr(shapes, "units", None)
    if units:
        try:
            factor = float((1 * units[-1]).to("nm").magnitude)
        except Exception:  # noqa: BLE001 - pixel or an unregistered unit: already nm
            factor = 1.0
    verts = [(np.asarray(v, float) * scale + translate) * factor for v in shapes.data]
    return verts, list(shapes.shape_type)


NO_CLUSTERING = "none"
MAX_CLUSTER_POINTS = 2_000_000


class MeasurePlot(DockFigure):
    """NeNA histogram + fit (left) and FRC curve + 1/7 threshold (right)."""

    def __init__(self):
        super().__init__(figsize=(4.2, 2.0), dpi=90, layout="constrained")
        self.ax_nena, self.ax_frc = self.figure.subplots(1, 2)
        self.canvas.setMinimumHeight(170)
        self.clear()

    def clear(self) -> None:
        for ax, title in ((self.ax_nena, "NeNA"), (self.ax_frc, "FRC")):
            ax.clear()
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
        self.redraw()

    def show(self, result) -> None:
        """Plot what ``result`` (a :class:`MeasureResult`) holds."""
        self.clear()
        n, f = result.nena, result.frc
        if n is not None:
            ax = self.ax_nena
            ax.bar(n.d_nm, n.histogram, width=np.diff(n.d_nm[:2]).item() if n.d_nm.size > 1 else 1,
                   color="0.6", label="pairs")  # fmt: skip
            ax.plot(n.d_nm, n.fit, "r-", lw=1.2, label="fit")
            ax.plot(n.d_nm, n.same_molecule(), "k--", lw=0.9, label="same molecule")
            ax.set_title(f"NeNA {n.precision_nm:.1f} nm", fontsize=8)
            ax.set_xlabel("next-frame distance (nm)", fontsize=7)
            ax.legend(fontsize=6, frameon=False)
        if f is not None:
            ax = self.ax_frc
            q = f.frequency * 1000  # 1/um
            ax.plot(q, f.curve, color="0.6", lw=0.8, label="FRC")
            ax.plot(q, f.curve_smooth, "b-", lw=1.2, label="smoothed")
            ax.axhline(f.threshold, color="r", lw=0.8, ls="--", label="1/7")
            if np.isfinite(f.resolution_nm):
                ax.axvline(1000 / f.resolution_nm, color="k", lw=0.6, ls=":")
            ax.set_ylim(-0.1, 1.05)
            ax.set_title(f"FRC {f.resolution_nm:.1f} nm", fontsize=8)
            ax.set_xlabel("spatial frequency (1/µm)", fontsize=7)
            ax.legend(fontsize=6, frameon=False)
        self.redraw()


class MeasureSection:
    """Mixin for :class:`~napari_nucleus_ai.widgets.localizations.LocalizationsWidget`.

    Expects the dock's :class:`~napari_nucleus_ai.widgets._base.DockBase` (``viewer``,
    ``start_job``, ``schema_spin``, ``run_button``, ``cancel_button``), ``self.layer``
    (the localization layer box), ``self.roi`` (ROI shapes box) and ``self._current()``.
    """

    def build_measure(self) -> list:
        """The section's widgets (to add to the dock), its plot and its toggle button."""
        from magicgui.widgets import CheckBox, ComboBox, Label, PushButton

        from napari_nucleus_ai.core.params import command_param
        from napari_nucleus_ai.localizations.analysis.cluster import DENSITY_FACTOR, METHODS
        from napari_nucleus_ai.localizations.analysis.precision import MODELS as NENA_MODELS
        from napari_nucleus_ai.widgets._base import collapsible, status_label

        def p(name):
            return command_param("measure", name)

        self.m_merge = CheckBox(label="merge blinks", value=False)
        self.m_radius = self.schema_spin(p("--radius"), label="merge radius", value=30.0,
                                         suffix=" nm")  # fmt: skip
        self.m_dark = self.schema_spin(p("--dark"), label="dark frames", value=1)
        self.m_nena = CheckBox(label="NeNA precision", value=True)
        self.m_nena_model = ComboBox(label="NeNA model", choices=list(NENA_MODELS))
        self.m_frc = CheckBox(label="FRC resolution", value=False)
        self.m_frc_pixel = self.schema_spin(p("--frc-pixel"), label="FRC pixel", value=10.0,
                                            suffix=" nm")  # fmt: skip
        self.m_frc_splits = self.schema_spin(p("--frc-splits"), label="FRC splits", value=5)
        self.m_cluster = ComboBox(label="clustering", choices=[NO_CLUSTERING, *METHODS])
        self.m_eps = self.schema_spin(p("--eps"), label="eps", value=20.0, suffix=" nm")
        self.m_min = self.schema_spin(p("--min"), label="min samples", value=5)
        self.m_floor = self.schema_spin(
            p("--density-factor"), label="density floor", value=DENSITY_FACTOR,
            tooltip="HDBSCAN / OPTICS: localizations below this multiple of the field's mean "
            "density are noise (0 = scikit-learn's labels; DBSCAN is not affected)",
        )  # fmt: skip
        self.measure_btn = PushButton(text="Measure")
        self.measure_cancel = PushButton(text="Cancel")
        self.m_result = Label(label="", value="")
        status_label(self.m_result)
        self.m_plot = MeasurePlot()
        self.measure_widgets = [
            self.m_merge, self.m_radius, self.m_dark, self.m_nena, self.m_nena_model,
            self.m_frc, self.m_frc_pixel, self.m_frc_splits, self.m_cluster, self.m_eps,
            self.m_min, self.m_floor, self.measure_btn, self.measure_cancel, self.m_result,
        ]  # fmt: skip
        self.m_floor.enabled = False  # only HDBSCAN and OPTICS have the noise rule
        self.m_cluster.changed.connect(
            lambda v: setattr(self.m_floor, "enabled", v in ("hdbscan", "optics"))
        )
        self.measure_btn.changed.connect(self.measure)
        self.measure_cancel.changed.connect(self.cancel_measure)
        self.measure_section = collapsible(
            "Measure", self.measure_widgets, qt_widgets=[self.m_plot.canvas], expanded=False
        )
        return [self.measure_section, *self.measure_widgets]

    def finish_measure(self) -> None:
        """Register the buttons, put the plot under the section's result line and fold the
        section (call after the dock's widgets were added and its layer box made)."""
        self.run_button(self.measure_btn, needs=[self.layer])
        self.cancel_button(self.measure_cancel)
        body = self.body_layout()
        row = self.m_result.native
        while row.parentWidget() is not None and body.indexOf(row) < 0:
            row = row.parentWidget()  # the labelled row holding the result line
        body.insertWidget(body.indexOf(row) + 1, self.m_plot.canvas)
        self.measure_section.toggle_section()

    def _measure_table(self, layer):
        from napari_nucleus_ai.localizations.filters import filter_localizations

        df = layer.metadata["localizations"]
        roi = getattr(self, "roi", None)
        if roi is not None and roi.value not in (None, "-") and roi.value in self.viewer.layers:
            verts, types = roi_nm(self.viewer.layers[roi.value])
            df = filter_localizations(df, roi=verts, roi_types=types)
        return df

    def measure(self, _=None):
        """Run the ticked measurements on the chosen layer's table (its ROI when one is set)."""
        from napari_nucleus_ai.localizations.analysis.measure import measure_gen

        layer = self._current()
        if layer is None:
            self.m_result.value = "choose a localization layer first"
            return None
        df = self._measure_table(layer)
        method = self.m_cluster.value
        self.m_result.value = f"measuring {len(df):,} localizations..."
        return self.start_job(
            measure_gen,
            df,
            merge=self.m_merge.value,
            radius_nm=self.m_radius.value,
            max_dark_frames=self.m_dark.value,
            nena=self.m_nena.value,
            nena_model=self.m_nena_model.value,
            frc=self.m_frc.value,
            frc_pixel_nm=self.m_frc_pixel.value,
            frc_splits=self.m_frc_splits.value,
            cluster=None if method == NO_CLUSTERING else method,
            eps_nm=self.m_eps.value,
            min_samples=self.m_min.value,
            density_factor=None if method == "dbscan" else self.m_floor.value,
            cancel=lambda: self.cancelled,
            on_result=lambda r: self._measured(layer, r),
            on_error=self._measure_failed,
            description="measuring",
        )

    def cancel_measure(self, _=None) -> None:
        """Stop the running job at its next step; its result is dropped."""
        self.cancel()
        self.m_result.value = "cancelled"

    def _measure_failed(self, error) -> None:
        from napari_nucleus_ai.core.errors import Cancelled, one_line

        self.m_result.value = "cancelled" if isinstance(error, Cancelled) else one_line(error)
        self.job_failed(error)

    def _measured(self, layer, result) -> None:
        from napari_nucleus_ai.localizations.analysis.measure import cluster_points_layer

        self.last_measure = result
        self.m_result.value = measure_text(result.summary)
        self.m_plot.show(result)
        c = result.cluster
        if c is None:
            return
        if len(result.data) > MAX_CLUSTER_POINTS:
            self.m_result.value += f"\n{len(result.data):,} points: too many to show; use a ROI"
            return
        data, kwargs, kind = cluster_points_layer(
            result.data, c, f"{layer.name} clusters", {"source": layer.metadata.get("source")}
        )
        kwargs["blending"] = "translucent_no_depth"
        self.add_result(kind, data, in_place=False, **kwargs)


def measure_text(summary: dict) -> str:
    """The result line: ``12,345 locs · merged 6,789 · NeNA 10.0 nm · ...``."""
    parts = [f"{summary['n_localizations']:,} locs"]
    if "n_merged" in summary:
        parts.append(f"merged {summary['n_merged']:,}")
    if "nena_nm" in summary:
        parts.append(f"NeNA {summary['nena_nm']:.1f} nm ({summary['nena_pairs']:,} pairs)")
    if "frc_nm" in summary:
        parts.append(f"FRC {summary['frc_nm']:.1f} nm")
    if "n_clusters" in summary:
        parts.append(
            f"{summary['n_clusters']:,} clusters, {100 * summary['fraction_clustered']:.0f} % "
            "clustered"
        )
    return " · ".join(parts)
