"""nm (STORM) and um (smear) layers share a viewer in one unit, with no units warning."""

from __future__ import annotations

import warnings

import pytest

pytestmark = pytest.mark.gui


def _add(viewer, sample):
    from napari.layers import Layer

    return [viewer.add_layer(Layer.create(*t)) for t in sample()]


@pytest.fixture
def said(monkeypatch):
    """Every warning napari's canvas would show (its units check calls ``show_warning``)."""
    import napari._vispy.canvas as canvas

    messages = []
    monkeypatch.setattr(canvas, "show_warning", messages.append)
    return messages


def _check_units(viewer):
    viewer.window._qt_viewer.canvas._update_world_units()  # what the next draw does


def test_nm_and_um_layers_show_in_micrometres_without_warning(make_napari_viewer, said):
    import pint

    from napari_nucleus_ai.demo.units import show_lengths_in
    from napari_nucleus_ai.samples.real import bccd_smear_sample, colicoords_storm_sample
    from napari_nucleus_ai.samples.smear import smear_field_sample
    from napari_nucleus_ai.samples.storm import storm_nuclei_sample
    from napari_nucleus_ai.samples.timelapse import make_sample
    from napari_nucleus_ai.widgets._compat import world_factor

    um = pint.get_application_registry().Unit("um")
    viewer = make_napari_viewer()
    show_lengths_in(viewer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*units.*")
        (storm,) = _add(viewer, storm_nuclei_sample)
        smear, _truth = _add(viewer, smear_field_sample)
        _add(viewer, bccd_smear_sample)
        _add(viewer, colicoords_storm_sample)
        _check_units(viewer)
        assert viewer.layers.units == (um, um)
        # each layer keeps its own units and scale; only the display is in um
        assert str(storm.units[-1]) == "nanometer" and storm.scale[-1] == 20.0
        assert world_factor(viewer, storm) == pytest.approx(1e-3)
        assert world_factor(viewer, smear) == pytest.approx(1.0)
        # a 40 um STORM field and a 128 um smear field: their true relative sizes
        ext = viewer.layers.get_extent([storm]).world
        assert ext[1][-1] - ext[0][-1] == pytest.approx(40.0, abs=0.1)
        # a time-lapse (t, y, x) comes and goes without dropping or breaking the override
        (movie, _) = _add(viewer, make_sample)
        _check_units(viewer)
        assert viewer.layers.units[-2:] == (um, um) and viewer.dims.ndim == 3
        viewer.layers.remove(movie)
        viewer.layers.remove("ground truth nuclei")
        _check_units(viewer)
        assert viewer.layers.units == (um, um) and viewer.dims.ndim == 2
    assert not [m for m in said if "units" in str(m).lower()]


def test_napari_alone_warns_for_a_pixel_layer_beside_nm(make_napari_viewer, said):
    """The check is real: a layer without a physical size beside a nm layer does warn."""
    import numpy as np

    from napari_nucleus_ai.demo.units import show_lengths_in

    viewer = make_napari_viewer()
    show_lengths_in(viewer)
    viewer.add_image(np.zeros((8, 8)), scale=(20, 20), units="nm")
    viewer.add_image(np.zeros((8, 8)))  # pixel units: no common unit exists
    _check_units(viewer)
    assert viewer.layers._units is None  # nothing forced
    assert any("Inconsistent units" in str(m) for m in said)


def test_an_roi_shapes_layer_joins_the_one_unit(make_napari_viewer, said):
    """Issue 25 item 12: ``viewer.add_shapes()`` (an ROI) beside nm and um layers."""
    import numpy as np
    import pint

    from napari_nucleus_ai.demo.units import show_lengths_in
    from napari_nucleus_ai.samples.smear import smear_field_sample
    from napari_nucleus_ai.samples.storm import storm_nuclei_sample

    um = pint.get_application_registry().Unit("um")
    viewer = make_napari_viewer()
    show_lengths_in(viewer)
    (storm,) = _add(viewer, storm_nuclei_sample)
    smear, _truth = _add(viewer, smear_field_sample)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        viewer.layers.selection.active = smear
        roi = viewer.add_shapes(name="roi")  # pixel units as napari makes it
        _check_units(viewer)
        viewer.layers.selection.active = storm
        storm_roi = viewer.add_shapes(name="storm roi")
        points = viewer.add_points()
        _check_units(viewer)
    said_units = [str(m) for m in said + [w.message for w in caught]]
    assert not [m for m in said_units if "Inconsistent units" in m], said_units
    assert viewer.layers.units == (um, um)  # the scale bar keeps its unit
    # drawn over the smear: the smear's um and pixel size
    assert [str(u) for u in roi.units] == ["micrometer"] * 2
    np.testing.assert_allclose(roi.scale, smear.scale)
    # over a localization render: the table's nm with scale 1 (ROI vertices in nm)
    assert [str(u) for u in storm_roi.units] == ["nanometer"] * 2
    np.testing.assert_allclose(storm_roi.scale, [1.0, 1.0])
    assert all(str(u) != "pixel" for u in points.units)
    # a layer with data is never reinterpreted
    drawn = viewer.add_points(np.array([[1.0, 2.0]]))
    assert [str(u) for u in drawn.units] == ["pixel"] * 2
